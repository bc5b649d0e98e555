"""A reverse proxy that serves PROXY_PREFIX and strips it before passing requests on to
PROXY_UPSTREAM, as nginx's ``location /app/ { proxy_pass http://upstream/; }`` does."""

from __future__ import annotations

import os

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

UPSTREAM = os.environ.get("PROXY_UPSTREAM", "http://127.0.0.1:8000")
PREFIX = os.environ.get("PROXY_PREFIX", "/app")


async def home(request: Request) -> Response:
    return PlainTextResponse("proxy")


async def forward(request: Request) -> Response:
    path = request.url.path
    if not path.startswith(PREFIX + "/"):
        return PlainTextResponse("not behind this proxy", status_code=404)
    headers = [(k, v) for k, v in request.headers.raw if k.lower() not in (b"host", b"content-length")]
    async with httpx.AsyncClient(base_url=UPSTREAM, timeout=20) as client:
        upstream = await client.request(
            request.method,
            path[len(PREFIX) :],
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
    response = Response(upstream.content, status_code=upstream.status_code)
    kept = [(k, v) for k, v in upstream.headers.raw if k.lower() != b"content-length"]
    response.raw_headers = [*kept, (b"content-length", str(len(upstream.content)).encode())]
    return response


app = Starlette(routes=[Route("/", home), Route("/{path:path}", forward, methods=["GET", "POST", "HEAD"])])
