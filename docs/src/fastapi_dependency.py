from typing import Annotated

from fastapi import Depends, FastAPI
from starlette.requests import HTTPConnection

from voice2fa_middleware import Identity, Voice2FAMiddleware, VoiceTwoFactor


async def identify(conn: HTTPConnection) -> tuple[str, str] | None:
    user = conn.cookies.get("user")  # a stand-in for your own sign-in
    return (user, "+12025550143") if user else None


app = FastAPI()


@app.get("/transfer")
async def transfer(
    identity: Annotated[Identity | None, Depends(VoiceTwoFactor(fresh_within=300))],
) -> dict[str, str | None]:
    # identity: the verified user; None for an anonymous request (it passes: signing in is your app's job).
    return {"user": identity.user_id if identity else None}


app.add_middleware(Voice2FAMiddleware, identify=identify)  # the dependency needs the middleware
