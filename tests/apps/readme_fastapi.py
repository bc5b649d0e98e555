"""The README's FastAPI recipe as written: settings from the environment, add_middleware."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import HTTPConnection

from voice2fa_middleware import Voice2FAMiddleware


async def identify(conn: HTTPConnection) -> tuple[str, str] | None:
    user = conn.cookies.get("test_user")
    return (user, "+12025550143") if user else None


app = FastAPI()


@app.get("/")
async def home() -> dict[str, str]:
    return {"page": "public"}


@app.get("/account")
async def account() -> dict[str, str]:
    return {"page": "account"}


app.add_middleware(Voice2FAMiddleware, identify=identify, protect=["/account"])
