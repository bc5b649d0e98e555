"""Demo: a Starlette app whose /account and /transfer pages need a voice call.

Run:  uvicorn examples.starlette_app:app --port 8000   (then open http://127.0.0.1:8000/)

Configured only from the environment (see example.env). With no SignalWire credentials the
console caller plays the call locally: the code appears on the terminal and on
http://127.0.0.1:8000/voice2fa/dev/phone. Sign in as demo / demo (who has a phone number), or
as new / new (who has none yet: the middleware asks for one and confirms it with a call).
Recovery codes (the way in without the phone) are at /voice2fa/recovery; what an email to the
user would say (a new number, recovery codes created or used, a lockout, a new remembered
device) is at /outbox.
"""

from __future__ import annotations

import html
import os
import secrets
from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from voice2fa_middleware import (
    Identity,
    MemoryRecoveryCodes,
    Voice2FAMiddleware,
    Voice2FASettings,
    require_voice_2fa,
    safe_next,
)

USERS = {"demo": "demo", "new": "new"}  # username -> password
DEMO_PHONE = os.environ.get("DEMO_PHONE", "+12025550143")
# The users' confirmed numbers. A real app keeps them in its database; the demo keeps them
# in memory, in each worker process ("new" starts without one).
PHONES: dict[str, str] = {"demo": DEMO_PHONE}
settings = Voice2FASettings.from_env(logout_url="/logout", app_name="the voice2fa demo")
# A padlock as an inline SVG: a tab icon without a request for it.
FAVICON = (
    "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>"
    "<rect x='3' y='7' width='10' height='8' rx='1'/>"
    "<path d='M5 7V5a3 3 0 0 1 6 0v2' fill='none' stroke='black' stroke-width='2'/></svg>"
)
# Recovery codes: a real app keeps their hashes in its database (see examples/fastapi_users_app.py).
RECOVERY_CODES = MemoryRecoveryCodes()
# What the app would email its users (on_notify): the demo keeps the messages and shows them at /outbox.
OUTBOX: list[tuple[str, str]] = []
EMAILS = {
    "phone_changed": "The phone number for sign-in checks on your account was changed.",
    "recovery_codes_created": "New recovery codes were created for your account; the old ones no longer work.",
    "recovery_code_used": "A recovery code was used to sign in to your account ({codes_left} left).",
    "locked": "Too many wrong codes were typed for your account: sign-in checks are paused for a while.",
    "new_device": "A new device will be remembered for sign-in checks on your account.",
    "call_reported": "You reported a verification call you did not expect: we are looking into it.",
}


async def identify(conn: HTTPConnection) -> Identity | None:
    """Who is signed in and their phone (``None``: none yet); ``None`` when nobody is. The
    session id set at sign-in binds the verification to this sign-in: signing in again,
    even on the same browser, needs a new call."""
    user = conn.session.get("user")
    if user not in USERS:
        return None
    return Identity(user, PHONES.get(user), session=conn.session.get("sid", ""))


async def save_phone(user_id: str, e164: str) -> None:
    """Called by the middleware once the user typed the code of a call to ``e164``."""
    PHONES[user_id] = e164


def notify(user_id: str, kind: str, detail: Mapping[str, str | int | float]) -> None:
    """What an email to the user would say (the middleware calls this in the background).
    "If this was not you" belongs in every one: these messages are how users notice an attack."""
    text = EMAILS.get(kind, kind).format(**detail)
    OUTBOX.append((user_id, text + " If this was not you, contact support."))


def page(request: Request, title: str, body: str, status: int = 200) -> HTMLResponse:
    # The middleware's own stylesheet, so the demo's pages and its verify page look like one product.
    # The icon is inline, so no page asks the server for a /favicon.ico it does not have.
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=color-scheme content='light dark'>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{title}</title>"
        f'<link rel=icon href="{FAVICON}"><link rel=stylesheet href={settings.prefix}/static/voice2fa.css>'
        "<main class=v2fa-card><nav class=v2fa-nav><a href=/>Home</a> <a href=/account>Account</a> "
        f"<a href=/transfer>Transfer</a> <a href=/phone>Phone</a> "
        f"<a href={settings.prefix}/recovery?next=/account>Recovery codes</a> <a href=/outbox>Outbox</a> "
        f"{who_is_signed_in(request)}</nav><h1>{title}</h1>{body}</main>",
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


async def home(request: Request) -> Response:
    user = request.session.get("user")
    who = f"Signed in as <b>{html.escape(user)}</b>." if user else "Not signed in."
    return page(request, "voice2fa demo", f"<p>{who} This page is public.</p>")


async def login(request: Request) -> Response:
    next_url = safe_next(request.query_params.get("next")) or "/account"
    form = (
        f"<form class=v2fa-form method=post action='/login?next={html.escape(next_url)}'>"
        "<p><label>Username <input name=username autocomplete=username required></label></p>"
        "<p><label>Password <input name=password type=password autocomplete=current-password required></label></p>"
        "<button class=v2fa-primary>Sign in</button></form>"
        "<p class=v2fa-hint>Demo accounts: demo / demo, and new / new (no phone number yet)</p>"
    )
    if request.method == "GET":
        return page(request, "Sign in", form)
    data = await request.form()
    username, password = str(data.get("username", "")), str(data.get("password", ""))
    if username in USERS and secrets.compare_digest(password, USERS[username]):
        request.session.clear()  # a new session on sign-in: no fixation
        request.session["user"] = username
        request.session["sid"] = secrets.token_urlsafe(16)  # this sign-in (Identity.session)
        return RedirectResponse(next_url, status_code=303)
    return page(request, "Sign in", "<p class=v2fa-error role=alert>Wrong username or password.</p>" + form, status=401)


def same_site(request: Request) -> bool:
    """Whether a POST comes from this site (Sec-Fetch-Site, else Origin)."""
    site, origin = request.headers.get("sec-fetch-site"), request.headers.get("origin")
    if site is not None:
        return site in ("same-origin", "none")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


async def logout(request: Request) -> Response:
    # POST only, and only from this site: a cross-site link or form must not sign anyone out.
    if not same_site(request):
        return PlainTextResponse("Forbidden: cross-site sign-out", status_code=403)
    request.session.clear()
    # The middleware ends the voice verification on this response (logout_url="/logout").
    return RedirectResponse("/", status_code=303)


async def account(request: Request) -> Response:
    if not request.session.get("user"):
        return RedirectResponse("/login?next=/account", status_code=303)
    return page(request, "Your account", "<p>Protected by a path pattern: you passed the voice check.</p>")


async def phone(request: Request) -> Response:
    """The account's phone settings: the number (masked) and a button to change it."""
    user = request.session.get("user")
    if not user:
        return RedirectResponse("/login?next=/phone", status_code=303)
    if request.method == "POST":
        if not same_site(request):
            return PlainTextResponse("Forbidden: cross-site form", status_code=403)
        # The middleware's phone page: a step-up check of the current number first, then the
        # new one is called and confirmed before save_phone() stores it.
        enrol: Response = await request.scope["voice2fa"].start_enrolment(next="/phone")
        return enrol
    number = PHONES.get(user)
    shown = f"ends in <b>{html.escape(number[-4:])}</b>" if number else "<b>not set</b>"
    label = "Change number" if number else "Add a number"
    return page(
        request,
        "Phone",
        f"<p>Your phone number for sign-in checks {shown}.</p>"
        f"<form method=post action=/phone><button class=v2fa-primary>{label}</button></form>",
    )


async def outbox(request: Request) -> Response:
    """The demo's mail: what was sent to the signed-in user (each user sees only their own)."""
    user = request.session.get("user")
    if not user:
        return RedirectResponse("/login?next=/outbox", status_code=303)
    mine = [text for to, text in OUTBOX if to == user]
    items = "".join(f"<li>{html.escape(text)}</li>" for text in reversed(mine)) or "<li>No messages yet.</li>"
    return page(request, "Outbox", f"<p>What an email to you would say, newest first.</p><ul id=outbox>{items}</ul>")


@require_voice_2fa(fresh_within=300)
async def transfer(request: Request) -> Response:
    if not request.session.get("user"):
        return RedirectResponse("/login?next=/transfer", status_code=303)
    return page(request, "Transfer money", "<p>Protected by the decorator, with a check no older than 5 minutes.</p>")


app = Starlette(
    routes=[
        Route("/", home),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/account", account),
        Route("/transfer", transfer),
        Route("/phone", phone, methods=["GET", "POST"]),
        Route("/outbox", outbox),
    ],
    middleware=[
        # The session is read by identify(), so it sits outside the 2FA middleware.
        Middleware(
            SessionMiddleware,
            secret_key=settings.secret_keys[0],
            https_only=bool(settings.public_url and settings.public_url.startswith("https:")),
        ),
        Middleware(
            Voice2FAMiddleware,
            identify=identify,
            protect=["/account"],
            settings=settings,
            on_phone_confirmed=save_phone,  # users without a phone are sent to the phone page
            recovery_codes=RECOVERY_CODES,  # {prefix}/recovery: one-time codes, the way in without the phone
            on_notify=notify,  # tell users of a new number, recovery codes, lockouts, new devices
        ),
    ],
)
