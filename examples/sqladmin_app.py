"""Demo: sqladmin (0.32) at /admin, behind its own login and a voice call.

Run:  uvicorn examples.sqladmin_app:app --port 8000   (then open http://127.0.0.1:8000/admin)
      (pip install '.[admin]'; settings from the environment as in example.env; with no
      SignalWire credentials the console caller shows the code on the terminal and on
      http://127.0.0.1:8000/voice2fa/dev/phone. DATABASE_URL defaults to an in-memory SQLite)

Sign in as demo / demo, then verify with the call: every page under /admin needs it.

Why two SessionMiddleware: sqladmin installs its own ``SessionMiddleware`` *inside* its mount
(``AuthenticationBackend(secret_key)``), so the session its login writes exists only below
/admin, after our middleware has already decided. ``identify`` runs in the outer app, so the app
gets a ``SessionMiddleware`` of its own, with the same secret key (the same cookie), outside
``Voice2FAMiddleware`` (first in ``middleware=[...]``): both read the one signed cookie.

The sign-in is bound to the proof: the login stores a random ``sid`` in the session and
``identify`` passes it as ``Identity(session=...)``, so signing out and in again needs a new call
even on a browser whose verified cookie is still there. sqladmin's logout is a GET route
(``/admin/logout``): ``logout_method="GET"`` makes our pages link to it, and a successful GET of it
ends the verification on that browser.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator

from sqladmin import Admin, ModelView
from sqladmin.authentication import AuthenticationBackend
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

from voice2fa_middleware import Identity, Voice2FAMiddleware, Voice2FASettings

USERS = {"demo": "demo"}  # username -> password
PHONES = {"demo": os.environ.get("DEMO_PHONE", "+12025550143")}
settings = Voice2FASettings.from_env(logout_url="/admin/logout", logout_method="GET", app_name="the admin demo")
SECRET = os.environ.get("ADMIN_SECRET_KEY") or settings.secret_keys[0]

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


class CustomerAdmin(ModelView, model=Customer):
    column_list = (Customer.id, Customer.name, Customer.email)
    column_searchable_list = (Customer.name,)


class DemoAuth(AuthenticationBackend):
    """sqladmin's login: demo / demo. A new random ``sid`` on each sign-in (no fixation)."""

    async def login(self, request: Request) -> bool:
        form = await request.form()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        if username not in USERS or not secrets.compare_digest(password, USERS[username]):
            return False
        request.session.clear()
        request.session.update({"user": username, "sid": secrets.token_urlsafe(16)})
        return True

    async def logout(self, request: Request) -> bool:
        request.session.clear()
        return True

    async def authenticate(self, request: Request) -> bool:
        return request.session.get("user") in USERS


async def identify(conn: HTTPConnection) -> Identity | None:
    """The admin signed in to sqladmin, from the app-level session (the same cookie)."""
    user, sid = conn.session.get("user"), conn.session.get("sid")
    if user not in USERS or not isinstance(sid, str):
        return None
    return Identity(user, PHONES[user], session=sid)


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
        # Outside ours, so that identify() sees the session sqladmin's login wrote.
        Middleware(SessionMiddleware, secret_key=SECRET),
        Middleware(Voice2FAMiddleware, identify=identify, protect=["/admin/*"], settings=settings),
    ],
    lifespan=lifespan,
)
admin = Admin(app, engine, base_url="/admin", title="Admin demo", authentication_backend=DemoAuth(secret_key=SECRET))
admin.add_view(CustomerAdmin)
