"""The package's layout: one concern per module, layers that import only layers below them,
and the middleware's own endpoints routed by a Starlette ``Router`` (methods on the routes)."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from voice2fa_middleware import Voice2FAMiddleware, Voice2FASettings

from .conftest import SECRET

PACKAGE = Path(__file__).resolve().parent.parent / "voice2fa_middleware"


def _package_imports(path: Path) -> set[str]:
    """The package modules a module imports, typing-only imports included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    return {p.stem: _package_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def test_no_import_cycle_not_even_a_typing_only_one() -> None:
    graph = _graph()
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", "import cycle: " + " -> ".join([*trail, module])
        state[module] = "open"
        for other in sorted(graph.get(module, ())):
            visit(other, [*trail, module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


# The layers, lowest first, as the "How the code is organised" table (docs/contributing/code-layout.md) lists them: a
# module imports only modules of its own layer or of layers before it.
LAYERS = [
    [
        "_errors", "_audit", "_urls", "_crypto", "_phone", "_messages", "_i18n", "_laml", "_webhooks", "_carrier",
        "_telemetry", "_deadline",
    ],
    ["_redis_scripts", "_redis_connect", "_redis_batch", "_breaker"],
    ["_settings"],
    ["_store"],
    ["_memory_store", "_redis_store"],
    ["_callers", "_pages", "_http"],
    ["_rules"],
    ["_proofs"],
    ["_forms"],
    ["_context"],
    ["_challenge"],
    ["_handle", "_enrolment"],
    ["_protection"],
    ["_enrol_endpoints", "_verify_endpoints", "_webhook_endpoints", "_dev_endpoints"],
    ["_endpoints"],
    ["_middleware", "_check"],
    ["__main__"],
    ["testing"],
    ["pytest_plugin"],
]


def test_every_module_has_a_layer() -> None:
    assert sorted(m for layer in LAYERS for m in layer) == sorted(_graph())


def test_layers_import_only_layers_below() -> None:
    rank = {m: n for n, layer in enumerate(LAYERS) for m in layer}
    for module, imports in _graph().items():
        for other in imports:
            assert rank[other] <= rank[module], f"{module} imports {other}, a layer above it"


def test_modules_and_classes_stay_small() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        lines = len(path.read_text().splitlines())
        assert lines <= 350, f"{path.name} has {lines} lines"
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                assert size <= 300, f"{path.name}:{node.name} has {size} lines"


# -- routing of the middleware's own endpoints ---------------------------------------------------


class _NoCaller:
    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str) -> str:
        raise AssertionError("no call expected")


async def _alice(conn: HTTPConnection) -> tuple[str, str]:
    return ("alice", "+12025550123")


async def _home(request: object) -> PlainTextResponse:
    return PlainTextResponse("home")


def _starlette_app() -> Starlette:
    app = Starlette(routes=[Route("/", _home)])
    app.add_middleware(
        Voice2FAMiddleware, identify=_alice, caller=_NoCaller(), settings=Voice2FASettings(secret_key=SECRET)
    )
    return app


async def _plain_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("plain")(scope, receive, send)


def _plain_app() -> Voice2FAMiddleware:
    """Around a plain ASGI app: no ``scope["app"]``, so routing answers 404/405 itself."""
    return Voice2FAMiddleware(
        _plain_asgi, identify=_alice, caller=_NoCaller(), settings=Voice2FASettings(secret_key=SECRET)
    )


@pytest.mark.anyio
@pytest.mark.parametrize("build", [_starlette_app, _plain_app], ids=["starlette", "plain-asgi"])
async def test_own_routes_declare_their_methods(build: object) -> None:
    app = build()  # type: ignore[operator]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        # HEAD comes with GET (before this layout it was a 404 on the static files).
        head = await client.head("/voice2fa/static/voice2fa.css")
        assert head.status_code == 200 and head.content == b""
        assert (await client.get("/voice2fa/static/voice2fa.css")).headers["content-type"].startswith("text/css")
        # A wrong method on an existing route is a 405 naming the allowed ones (static: was 404).
        for method, path, allowed in [
            ("POST", "/voice2fa/static/voice2fa.css", "GET, HEAD"),
            ("GET", "/voice2fa/resend", "POST"),
            ("GET", "/voice2fa/cancel", "POST"),
            ("PUT", "/voice2fa/verify/status", "GET, HEAD"),
            ("GET", "/voice2fa/laml/token", "POST"),
            ("GET", "/voice2fa/status/token", "POST"),
        ]:
            response = await client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert set(response.headers["allow"].split(", ")) == set(allowed.split(", "))
        # Unknown paths under the prefix, and a trailing slash, are 404s (no redirect).
        for path in ["/voice2fa/nothing", "/voice2fa/verify/", "/voice2fa/static/missing.css", "/voice2fa"]:
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.text == "Not Found"
        # The app behind still answers its own paths.
        assert (await client.get("/")).status_code == 200
