from fastapi import FastAPI, Request
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection

from voice2fa_middleware import Voice2FAMiddleware

PHONES = {"alice": "+12025550143"}  # your users table: user id -> phone number (E.164)


async def identify(conn: HTTPConnection) -> tuple[str, str | None] | None:
    """Who is signed in? Sync or async; None: nobody (the request passes untouched)."""
    user_id = conn.session.get("user_id")  # your own session
    return (user_id, PHONES.get(user_id)) if user_id else None


app = FastAPI()


@app.post("/login")
async def login(request: Request) -> dict[str, str]:
    """A stand-in for your own sign-in: it believes the name it is given."""
    request.session["user_id"] = (await request.json())["user_id"]
    return {"signed_in": request.session["user_id"]}


@app.get("/account")
async def account() -> dict[str, str]:
    return {"page": "account"}


@app.get("/admin/reports")
async def reports() -> dict[str, str]:
    return {"page": "reports"}


# add_middleware wraps what is there: Voice2FAMiddleware first, then the session outside it,
# because identify() reads the session. Settings come from the environment (and .env).
app.add_middleware(Voice2FAMiddleware, identify=identify, protect=["/account", "/admin/*"])
app.add_middleware(SessionMiddleware, secret_key="change-me: your own secret, 32 characters or more")
