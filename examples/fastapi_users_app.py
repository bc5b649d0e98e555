"""Demo: fastapi-users (SQLite through SQLAlchemy async, cookie transport) with a phone column,
and a voice call before /account.

Run:  uvicorn examples.fastapi_users_app:app --port 8000
      (pip install 'fastapi-users[sqlalchemy]' aiosqlite; settings from the environment as in
      example.env; DATABASE_URL defaults to ./fastapi_users_demo.db)

Register with POST /auth/register {"email", "password", "phone"}, sign in with POST /auth/login
(form: username, password), then open /account. Sign out with POST /auth/logout: the
middleware ends the voice verification on that response (logout_url="/auth/logout").

Recovery codes live in the app's database: ``SQLRecoveryCodes`` is the recipe (a table of
user id, keyed hash and when it was used; one UPDATE consumes a code, for exactly one caller).
Create them at /voice2fa/recovery. GET /outbox lists what an email to you would say.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Annotated

from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, CookieTransport, JWTStrategy
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from sqlalchemy import DateTime, ForeignKey, Integer, String, delete, func, select, update
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


class RecoveryCode(Base):
    """One recovery code of a user: its keyed hash (the middleware never hands over a code)."""

    __tablename__ = "recovery_code"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), ForeignKey("user.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SQLRecoveryCodes:
    """The middleware's ``RecoveryCodeStore`` on this database: codes outlive any store TTL."""

    async def save(self, user_id: str, hashes: Sequence[str]) -> None:
        async with sessions() as session, session.begin():  # one transaction: the old set ends
            await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
            session.add_all(RecoveryCode(user_id=user_id, code_hash=h) for h in hashes)

    async def remaining(self, user_id: str) -> int:
        async with sessions() as session:
            query = select(func.count()).where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
            return int((await session.execute(query)).scalar_one())

    async def consume(self, user_id: str, code_hash: str) -> bool:
        # One UPDATE ... WHERE used_at IS NULL: of concurrent uses of a code, one changes the row.
        async with sessions() as session, session.begin():
            result = await session.execute(
                update(RecoveryCode)
                .where(
                    RecoveryCode.user_id == user_id,
                    RecoveryCode.code_hash == code_hash,
                    RecoveryCode.used_at.is_(None),
                )
                .values(used_at=func.now())
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# What the app would email its users (on_notify); the demo lists them at GET /outbox.
OUTBOX: list[tuple[str, str, dict[str, object]]] = []


async def notify(user_id: str, kind: str, detail: Mapping[str, object]) -> None:
    """Called in the background for a new number, recovery codes created or used, a lockout, a new
    remembered device: a real app sends an email here ("if this was not you...")."""
    OUTBOX.append((user_id, kind, dict(detail)))


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


@app.get("/outbox")
async def outbox(user: Annotated[User, Depends(current_user)]) -> list[dict[str, object]]:
    """The demo's mail to the signed-in user, newest first."""
    return [{"kind": kind, **detail} for to, kind, detail in reversed(OUTBOX) if to == str(user.id)]


app.add_middleware(
    Voice2FAMiddleware,
    identify=identify,
    protect=["/account"],
    settings=settings,
    recovery_codes=SQLRecoveryCodes(),
    on_notify=notify,
)
