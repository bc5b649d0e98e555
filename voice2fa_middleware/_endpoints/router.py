"""The middleware's own endpoints under its prefix, routed by a Starlette ``Router``.

The router is built once; each route declares its methods (HEAD comes with GET). Errors are
mapped to responses in one place, ``OwnEndpoints.__call__``: a ``Refused`` request and a
failing store (503, fail closed) get the same page or JSON as every other error, and the
``HTTPException`` that Starlette's routing raises for 404 and 405 inside an app becomes a
plain response (we sit outside the app's exception handlers).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, Router
from starlette.types import Receive, Scope, Send

from .._errors import StoreError
from .._flow.challenge import Challenger
from .._flow.enrolment import Enrolment
from .._flow.recovery import RecoveryCodes
from .._flow.runtime import Misordered
from .._web.forms import ClientGone, Refused
from .._web.pages import text_response
from .dev_phone import DevEndpoints
from .enrol import EnrolEndpoints
from .recovery import RecoveryEndpoints
from .verify import VerifyEndpoints
from .webhooks import WebhookEndpoints

logger = logging.getLogger("voice2fa")


class OwnEndpoints:
    """An ASGI app serving ``{prefix}/...``; the middleware hands it its own paths."""

    def __init__(
        self, challenger: Challenger, enrolment: Enrolment | None = None, recovery: RecoveryCodes | None = None
    ) -> None:
        self.ctx = ctx = challenger.ctx
        p = ctx.prefix
        verify = VerifyEndpoints(challenger, enrolment)
        hooks = WebhookEndpoints(ctx)
        routes: list[BaseRoute] = [
            Route(f"{p}/verify", verify.page, methods=["GET"]),
            Route(f"{p}/verify", verify.submit, methods=["POST"]),
            Route(f"{p}/verify/status", verify.status, methods=["GET"]),
            Route(f"{p}/resend", verify.resend, methods=["POST"]),
            Route(f"{p}/cancel", verify.cancel, methods=["POST"]),
            Route(f"{p}/start", verify.start, methods=["GET"]),
            Route(f"{p}/resubmit", verify.resubmit, methods=["GET"]),
            Route(f"{p}/laml/{{token}}", hooks.laml, methods=["POST"]),
            Route(f"{p}/laml/{{token}}/{{action}}", hooks.laml, methods=["POST"]),
            Route(f"{p}/status/{{token}}", hooks.status, methods=["POST"]),
            Route(f"{p}/status/{{token}}/amd", hooks.amd, methods=["POST"]),
            Route(f"{p}/static/{{name}}", self.static, methods=["GET"]),
        ]
        if enrolment is not None:  # the phone page exists when the app can save a number
            phone = EnrolEndpoints(enrolment)
            routes += [
                Route(f"{p}/phone", phone.page, methods=["GET"]),
                Route(f"{p}/phone", phone.submit, methods=["POST"]),
            ]
        if recovery is not None:  # the recovery codes pages exist when the app keeps codes
            codes = RecoveryEndpoints(challenger, recovery, verify)
            routes += [
                Route(f"{p}/recovery", codes.page, methods=["GET"]),
                Route(f"{p}/recovery", codes.create, methods=["POST"]),
                Route(f"{p}/recovery/use", codes.use_page, methods=["GET"]),
                Route(f"{p}/recovery/use", codes.use, methods=["POST"]),
            ]
        if ctx.dev_pages and ctx.caller.calls_nobody:
            dev = DevEndpoints(ctx)
            routes += [
                Route(f"{p}/dev/phone", dev.phone, methods=["GET"]),
                Route(f"{p}/dev/calls", dev.calls, methods=["GET"]),
            ]
        self.router = Router(routes, redirect_slashes=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response: Response
        try:
            await self.router(scope, receive, send)
            return
        except Refused as exc:
            named: dict[str, Any] = {"field": exc.field} if exc.field is not None else {}
            response = self.ctx.error(
                req := Request(scope), exc.status, exc.error, link=self.ctx.pending_next(req), **named
            )
        except StoreError as exc:
            logger.error("voice2fa: store unavailable, failing closed: %s", exc)
            response = self.ctx.error(
                req := Request(scope), 503, "store", retry_after=5, link=self.ctx.pending_next(req)
            )
        except HTTPException as exc:
            response = text_response(exc.status_code, exc.detail)
            response.headers.update(exc.headers or {})
        except Misordered as exc:  # identify() needs a middleware that runs inside ours
            response = self.ctx.misorder_response(exc)
        except ClientGone:
            # The client left mid-body (a closed tab, a dropped connection): nobody to answer,
            # and nothing failed on our side.
            logger.debug("voice2fa: the client disconnected before sending its whole body")
            return
        await response(scope, receive, send)

    async def static(self, request: Request) -> Response:
        found = self.ctx.pages.static.get(request.path_params["name"])
        if found is None:
            return text_response(404, "Not Found")
        return Response(
            found[0],
            media_type=found[1],
            headers={"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"},
        )
