"""Demo: fastapi-users (SQLite through SQLAlchemy async, cookie transport) with a phone column,
and a voice call before /account.

Run:  uvicorn examples.fastapi_users_app:app --port 8000
      (pip install 'fastapi-users[sqlalchemy]' aiosqlite; settings from the environment as in
      example.env; DATABASE_URL defaults to ./fastapi_users_demo.db)

Register with POST /auth/register {"email", "password", "phone"}, sign in with POST /auth/login
(form: username, password), then open /account. Sign out with POST /auth/logout: the
middleware ends the voice verification on that response (logout_url="/auth/logout").
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, CookieTransport, JWTStrategy
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from sqlalchemy import String
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.requests import HTTPConnection

from voice2fa_middleware import Identity, Voice2FAMiddleware, Voice2FASettings

settings = Voice2FASettings.from_env(logout_url="/auth/logout", app_name="the voice2fa demo")
SECRET = settings.secret_keys[0]
engine = create_async_engine(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./fastapi_users_demo.db"))
sessions = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)


class UserRead(schemas.BaseUser[uuid.UUID]):
    phone: str | None = None


class UserCreate(schemas.BaseUserCreate):
    phone: str | None = None


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = SECRET
    verification_token_secret = SECRET


async def get_user_manager() -> AsyncIterator[UserManager]:
    async with sessions() as session:
        yield UserManager(SQLAlchemyUserDatabase(session, User))


def get_strategy() -> JWTStrategy[User, uuid.UUID]:
    return JWTStrategy(secret=SECRET, lifetime_seconds=3600)


transport = CookieTransport(cookie_name="auth", cookie_max_age=3600, cookie_secure=False)
backend = AuthenticationBackend(name="cookie", transport=transport, get_strategy=get_strategy)
users = FastAPIUsers[User, uuid.UUID](get_user_manager, [backend])
current_user = users.current_user(active=True)


async def identify(conn: HTTPConnection) -> Identity | None:
    """The signed-in user, found as fastapi-users finds it: its cookie, its strategy, its manager."""
    token = conn.cookies.get("auth")
    if not token:
        return None
    async for manager in get_user_manager():
        user = await get_strategy().read_token(token, manager)
        if user is None or not user.is_active:
            return None
        # The version changes with the password: a new password ends every verification. The
        # session is this sign-in's token (hashed: never the token itself), so signing out and
        # in again needs a new call, without a logout_url the middleware must see.
        session = hashlib.sha256(token.encode()).hexdigest()[:32]
        return Identity(str(user.id), user.phone or "", user.hashed_password[-12:], session)
    return None


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
app.include_router(users.get_auth_router(backend), prefix="/auth")
app.include_router(users.get_register_router(UserRead, UserCreate), prefix="/auth")


@app.get("/")
async def home() -> dict[str, str]:
    return {"page": "public"}


@app.get("/account")
async def account(user: Annotated[User, Depends(current_user)]) -> dict[str, str]:
    return {"page": "account", "email": user.email}


app.add_middleware(Voice2FAMiddleware, identify=identify, protect=["/account"], settings=settings)
