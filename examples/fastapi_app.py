"""Demo: a FastAPI app whose /account and /transfer pages need a voice call.

Run:  uvicorn examples.fastapi_app:app --port 8000   (then open http://127.0.0.1:8000/)

Configured only from the environment (see example.env). Sign in as demo / demo (who has a
phone number), or as new / new (who has none yet: the middleware asks for one and confirms it).
"""

from __future__ import annotations

import html
import os
import secrets
from typing import Annotated

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection

from voice2fa_middleware import Identity, Voice2FAMiddleware, Voice2FASettings, VoiceTwoFactor, safe_next

USERS = {"demo": "demo", "new": "new"}  # username -> password
DEMO_PHONE = os.environ.get("DEMO_PHONE", "+12025550143")
# The users' confirmed numbers: a real app keeps them in its database, the demo in memory.
PHONES: dict[str, str] = {"demo": DEMO_PHONE}
settings = Voice2FASettings.from_env(logout_url="/logout", app_name="the voice2fa demo")
# A padlock as an inline SVG: a tab icon without a request for it.
FAVICON = (
    "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>"
    "<rect x='3' y='7' width='10' height='8' rx='1'/>"
    "<path d='M5 7V5a3 3 0 0 1 6 0v2' fill='none' stroke='black' stroke-width='2'/></svg>"
)


async def identify(conn: HTTPConnection) -> Identity | None:
    """The signed-in user; the session id set at sign-in binds verifications to this sign-in."""
    user = conn.session.get("user")
    if user not in USERS:
        return None
    return Identity(user, PHONES.get(user), session=conn.session.get("sid", ""))


def save_phone(user_id: str, e164: str) -> None:
    """Called once the user typed the code of a call to ``e164`` (sync: run in a worker thread)."""
    PHONES[user_id] = e164


def page(request: Request, title: str, body: str, status: int = 200) -> HTMLResponse:
    # The middleware's own stylesheet, so the demo's pages and its verify page look like one product.
    # The icon is inline, so no page asks the server for a /favicon.ico it does not have.
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=color-scheme content='light dark'>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{title}</title>"
        f'<link rel=icon href="{FAVICON}"><link rel=stylesheet href={settings.prefix}/static/voice2fa.css>'
        "<main class=v2fa-card><nav class=v2fa-nav><a href=/>Home</a> <a href=/account>Account</a> "
        f"<a href=/transfer>Transfer</a> <a href=/phone>Phone</a> {who_is_signed_in(request)}</nav>"
        f"<h1>{title}</h1>{body}</main>",
        status_code=status,
    )


def who_is_signed_in(request: Request) -> str:
    """The end of the nav: who is signed in and a way out, or a way in; never both."""
    user = request.session.get("user")
    if not user:
        return "<a href=/login>Sign in</a>"
    return (
        f"<span>Signed in as <b>{html.escape(user)}</b></span> "
        "<form method=post action=/logout><button class=v2fa-link>Sign out</button></form>"
    )


app = FastAPI(title="voice2fa FastAPI demo")
# add_middleware puts each new middleware outside the previous ones: the session must be
# outermost because identify() reads it.
app.add_middleware(
    Voice2FAMiddleware, identify=identify, protect=["/account"], settings=settings, on_phone_confirmed=save_phone
)
app.add_middleware(
    SessionMiddleware,
    secret_key=settings.secret_keys[0],
    https_only=bool(settings.public_url and settings.public_url.startswith("https:")),
)

LOGIN_FORM = (
    "<form class=v2fa-form method=post action='/login?next={next}'>"
    "<p><label>Username <input name=username autocomplete=username required></label></p>"
    "<p><label>Password <input name=password type=password autocomplete=current-password required></label></p>"
    "<button class=v2fa-primary>Sign in</button></form>"
    "<p class=v2fa-hint>Demo accounts: demo / demo, and new / new (no phone number yet)</p>"
)


@app.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    user = request.session.get("user")
    who = f"Signed in as <b>{html.escape(user)}</b>." if user else "Not signed in."
    return page(request, "voice2fa demo (FastAPI)", f"<p>{who} This page is public.</p>")


@app.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/account") -> Response:
    return page(request, "Sign in", LOGIN_FORM.format(next=html.escape(safe_next(next) or "/account")))


@app.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: str = "/account",
) -> Response:
    target = safe_next(next) or "/account"
    if username in USERS and secrets.compare_digest(password, USERS[username]):
        request.session.clear()
        request.session["user"] = username
        request.session["sid"] = secrets.token_urlsafe(16)  # this sign-in (Identity.session)
        return RedirectResponse(target, status_code=303)
    return page(
        request,
        "Sign in",
        "<p class=v2fa-error role=alert>Wrong username or password.</p>" + LOGIN_FORM.format(next=html.escape(target)),
        401,
    )


def same_site(request: Request) -> bool:
    """Whether a POST comes from this site (Sec-Fetch-Site, else Origin)."""
    site, origin = request.headers.get("sec-fetch-site"), request.headers.get("origin")
    if site is not None:
        return site in ("same-origin", "none")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


@app.post("/logout")
async def logout(request: Request) -> Response:
    # POST only, and only from this site: a cross-site link or form must not sign anyone out.
    if not same_site(request):
        return PlainTextResponse("Forbidden: cross-site sign-out", status_code=403)
    request.session.clear()
    # The middleware ends the voice verification on this response (logout_url="/logout").
    return RedirectResponse("/", status_code=303)


@app.get("/account", response_class=HTMLResponse)
async def account(request: Request) -> Response:
    if not request.session.get("user"):
        return RedirectResponse("/login?next=/account", status_code=303)
    return page(request, "Your account", "<p>Protected by a path pattern: you passed the voice check.</p>")


@app.get("/transfer", response_class=HTMLResponse)
async def transfer(
    request: Request, identity: Annotated[Identity | None, Depends(VoiceTwoFactor(fresh_within=300))]
) -> Response:
    if identity is None:
        return RedirectResponse("/login?next=/transfer", status_code=303)
    return page(
        request,
        "Transfer money",
        f"<p>Verified as {html.escape(identity.user_id)} within the last 5 minutes (a FastAPI dependency).</p>",
    )


@app.get("/phone", response_class=HTMLResponse)
async def phone(request: Request) -> Response:
    """The account's phone settings: the number (masked) and a button to change it."""
    user = request.session.get("user")
    if not user:
        return RedirectResponse("/login?next=/phone", status_code=303)
    number = PHONES.get(user)
    shown = f"ends in <b>{html.escape(number[-4:])}</b>" if number else "<b>not set</b>"
    label = "Change number" if number else "Add a number"
    return page(
        request,
        "Phone",
        f"<p>Your phone number for sign-in checks {shown}.</p>"
        f"<form method=post action=/phone><button class=v2fa-primary>{label}</button></form>",
    )


@app.post("/phone")
async def change_phone(request: Request) -> Response:
    if not request.session.get("user"):
        return RedirectResponse("/login?next=/phone", status_code=303)
    if not same_site(request):
        return PlainTextResponse("Forbidden: cross-site form", status_code=403)
    # The middleware's phone page: a step-up check of the current number, then the new one.
    response: Response = await request.scope["voice2fa"].start_enrolment(next="/phone")
    return response
