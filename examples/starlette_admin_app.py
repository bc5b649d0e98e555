"""Demo: starlette-admin (1.0) at /admin, behind its own login and a voice call.

Run:  uvicorn examples.starlette_admin_app:app --port 8000   (then open http://127.0.0.1:8000/admin)
      (pip install '.[admin]'; settings from the environment as in example.env; with no
      SignalWire credentials the console caller shows the code on the terminal and on
      http://127.0.0.1:8000/voice2fa/dev/phone. DATABASE_URL defaults to an in-memory SQLite)

Sign in as demo / demo, then verify with the call: every page under /admin needs it.

starlette-admin keeps its login in ``request.session`` and leaves the ``SessionMiddleware`` to
the app: it goes outside ``Voice2FAMiddleware`` (first in ``middleware=[...]``), so that
``identify`` sees who signed in. The login stores a random ``sid`` in the session, passed as
``Identity(session=...)``: signing out and in again needs a new call.

starlette-admin's logout is a POST (``/admin/logout``) checked by its own CSRF middleware (a
double-submit cookie, ``starlette_admin_csrftoken``, echoed in the ``csrftoken`` field):
``signout_fields`` puts that token into the Sign out form of our pages, which the CSRF
middleware otherwise refuses with 403 "CSRF token missing".
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator

from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette_admin.auth import AdminUser, AuthProvider, LoginFailed
from starlette_admin.contrib.sqla import Admin, ModelView

from voice2fa_middleware import Identity, Voice2FAMiddleware, Voice2FASettings

USERS = {"demo": "demo"}  # username -> password
PHONES = {"demo": os.environ.get("DEMO_PHONE", "+12025550143")}
settings = Voice2FASettings.from_env(logout_url="/admin/logout", app_name="the admin demo")
SECRET = os.environ.get("ADMIN_SECRET_KEY") or settings.secret_keys[0]
CSRF_COOKIE = "starlette_admin_csrftoken"  # starlette_admin.security.CSRFMiddleware.cookie_name

# One connection (StaticPool): an in-memory database lives as long as it.
engine = create_async_engine(
    os.environ.get("DATABASE_URL", "sqlite+aiosqlite://"),
    poolclass=StaticPool,
    connect_args={"check_same_thread": False},
)
sessions = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customer"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(200))


class DemoAuth(AuthProvider):
    """starlette-admin's login: demo / demo. A new random ``sid`` on each sign-in (no fixation)."""

    async def login(self, username: str, password: str, remember_me: bool, request: Request) -> Response | None:
        if username not in USERS or not secrets.compare_digest(password, USERS[username]):
            raise LoginFailed("Invalid username or password")
        request.session.clear()
        request.session.update({"user": username, "sid": secrets.token_urlsafe(16)})
        return None

    async def logout(self, request: Request) -> Response | None:
        request.session.clear()
        return None

    async def authenticate(self, request: Request) -> AdminUser | None:
        user = request.session.get("user")
        return AdminUser(username=user) if user in USERS else None


async def identify(conn: HTTPConnection) -> Identity | None:
    """The admin signed in to starlette-admin, from the app's session."""
    user, sid = conn.session.get("user"), conn.session.get("sid")
    if user not in USERS or not isinstance(sid, str):
        return None
    return Identity(user, PHONES[user], session=sid)


def signout_fields(request: HTTPConnection) -> dict[str, str]:
    """starlette-admin's CSRF token for our Sign out form: its cookie holds the signed token
    the ``csrftoken`` field must repeat."""
    return {"csrftoken": request.cookies.get(CSRF_COOKIE, "")}


async def home(request: Request) -> Response:
    return HTMLResponse("<!doctype html><title>admin demo</title><p>Public page. <a href=/admin/>Admin</a>")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    async with sessions() as session:
        if not await session.scalar(select(func.count()).select_from(Customer)):
            session.add_all(
                [
                    Customer(name="Ada Lovelace", email="ada@example.com"),
                    Customer(name="Alan Turing", email="alan@example.com"),
                    Customer(name="Grace Hopper", email="grace@example.com"),
                ]
            )
            await session.commit()
    yield
    await engine.dispose()


app = Starlette(
    routes=[Route("/", home)],
    middleware=[
        # Outside ours, so that identify() sees the session starlette-admin's login wrote.
        Middleware(SessionMiddleware, secret_key=SECRET),
        Middleware(
            Voice2FAMiddleware,
            identify=identify,
            protect=["/admin/*"],
            settings=settings,
            signout_fields=signout_fields,
        ),
    ],
    lifespan=lifespan,
)
admin = Admin(engine, title="Admin demo", base_url="/admin", auth_provider=DemoAuth(), secret_key=SECRET)
admin.add_view(ModelView(Customer))
admin.mount_to(app)
