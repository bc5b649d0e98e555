from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import HTTPConnection

from voice2fa_middleware import Identity


def make_identify(get_strategy: Callable[[], Any], get_user_manager: Callable[[], AsyncIterator[Any]]) -> Any:
    """identify() for fastapi-users: the app's own strategy and user manager (its dependencies)."""

    async def identify(conn: HTTPConnection) -> Identity | None:
        token = conn.cookies.get("auth")  # the cookie transport's cookie
        if not token:
            return None
        async for manager in get_user_manager():
            user = await get_strategy().read_token(token, manager)
            if user is None or not user.is_active:
                return None
            # The version is a piece of the password hash: a new password ends every verification.
            return Identity(str(user.id), user.phone or None, user.hashed_password[-12:])
        return None

    return identify
