"""The package's layout: one concern per module, layers that import only layers below them,
and the middleware's own endpoints routed by a Starlette ``Router`` (methods on the routes)."""

from __future__ import annotations

import ast
import re
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
LAYOUT_PAGE = PACKAGE.parent / "docs" / "contributing" / "code-layout.md"

# The layers, lowest first, as "How the code is organised" lists them: a layer is a private
# sub-package or a top-level module, and a module imports only modules of its own layer or of
# the layers before it. Inside a sub-package, its modules may import each other (no cycle).
LAYERS: list[list[str]] = [
    ["_errors"],
    ["_core"],
    ["_settings", "_i18n", "_standards"],
    ["_telephony", "_stores"],
    ["_web"],
    ["_flow"],
    ["_handle", "_support"],
    ["_protection", "_endpoints"],
    ["_middleware"],
    ["_check", "stores", "callers"],
    ["__main__", "testing"],
    ["pytest_plugin"],
]
# A module this long is named in the test output (never failed): a hint to look, not a cap.
LONG_MODULE = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The full names of the package modules an ``import from`` names (relative or absolute)."""
    if node.level == 0:
        base = node.module or ""
    else:
        here = module.split(".") if is_package else module.split(".")[:-1]
        anchor = here[: len(here) - (node.level - 1)]
        base = ".".join([*anchor, *([node.module] if node.module else [])])
    if not base.startswith("voice2fa_middleware"):
        return []
    modules = _modules()
    found = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        found.append(candidate if candidate in modules else base)
    return found


def _graph() -> dict[str, set[str]]:
    """Each package module and the package modules it imports, typing-only and function-level
    imports included."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imports: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                imports.update(_resolve(name, path.name == "__init__.py", node))
            elif isinstance(node, ast.Import):
                imports.update(a.name for a in node.names if a.name.startswith("voice2fa_middleware."))
        graph[name] = {m for m in imports if m in modules and m != name}
    return graph


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_imports_resolve_to_modules() -> None:
    graph = _graph()
    # Sanity of the resolver itself: known edges are seen, through relative imports of each depth.
    assert "voice2fa_middleware._core.crypto" in graph["voice2fa_middleware._stores.base"]
    assert "voice2fa_middleware._stores.redis_scripts" in graph["voice2fa_middleware._stores.redis_batch"]
    assert "voice2fa_middleware._flow.challenge" in graph["voice2fa_middleware._handle"]


def test_no_import_cycle_not_even_a_typing_only_one() -> None:
    graph = _graph()
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", "import cycle: " + " -> ".join([*trail, module])
        state[module] = "open"
        for other in sorted(graph.get(module, ())):
            # A sub-package's __init__ is imported with each of its modules: not an edge back.
            if other == module.rsplit(".", 1)[0]:
                continue
            visit(other, [*trail, module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


def test_every_module_has_a_layer() -> None:
    layered = {name for layer in LAYERS for name in layer}
    found = {_layer_of(m) for m in _graph()} - {None, "__init__"}
    assert found == layered


def test_layers_import_only_layers_below() -> None:
    rank = {m: n for n, layer in enumerate(LAYERS) for m in layer}
    for module, imports in _graph().items():
        own = _layer_of(module)
        if own is None or own == "__init__":
            continue
        for other in imports:
            theirs = _layer_of(other)
            if theirs is None or theirs == "__init__":
                continue
            assert rank[theirs] <= rank[own], f"{module} imports {other}, a layer above it"


def _organisation_table(text: str) -> list[dict[str, list[str]]]:
    """The layers "How the code is organised" lists, in order: each row's first cell names its
    members separated by ``;``, a sub-package followed by its modules (``_web/``: ``pages``, ...)."""
    section = text.split("# How the code is organised", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table = []
    for row in rows:
        members: dict[str, list[str]] = {}
        for member in row.split("|")[1].split(";"):
            head, _, modules = member.partition(":")
            members[head.strip().strip("`").rstrip("/")] = re.findall(r"`([^`]+)`", modules)
        table.append(members)
    return table


def test_the_organisation_table_lists_every_layer_and_module() -> None:
    """The docs' "How the code is organised" names every layer in order, and every module of
    each sub-package, so the description cannot drift from the tree."""
    table = _organisation_table(LAYOUT_PAGE.read_text())
    assert [sorted(row) for row in table] == [sorted(layer) for layer in LAYERS]
    for row in table:
        for name, modules in row.items():
            if (PACKAGE / name).is_dir():
                found = sorted(p.stem for p in (PACKAGE / name).glob("*.py") if p.stem != "__init__")
                assert sorted(modules) == found, name
            else:
                assert (PACKAGE / f"{name}.py").is_file() and modules == [], name


def test_long_modules_are_reported_not_failed(capsys: pytest.CaptureFixture[str]) -> None:
    long = {}
    for name, path in _modules().items():
        lines = len(path.read_text().splitlines())
        if lines > LONG_MODULE:
            long[name] = lines
    with capsys.disabled():
        for name, lines in sorted(long.items()):
            print(f"\nlayout: {name} has {lines} lines; look whether it holds more than one concern")
    assert all(lines > 0 for lines in long.values())


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


# -- the public namespaces and the capabilities of the extension points -------------------------


def test_extension_points_have_public_namespaces_that_match_the_top_level() -> None:
    import voice2fa_middleware
    from voice2fa_middleware import callers, stores

    assert sorted(stores.__all__) == sorted(
        [
            "Bucket",
            "Challenge",
            "MemoryRecoveryCodes",
            "MemoryStore",
            "RecoveryCodeStore",
            "RedisStore",
            "Reservation",
            "Start",
            "Store",
            "StoreError",
            "StoreFullError",
            "challenge_id",
        ]
    )
    assert sorted(callers.__all__) == sorted(
        [
            "BaseCaller",
            "CallError",
            "Caller",
            "ConsoleCaller",
            "ProviderUnavailableError",
            "SignalWireCaller",
            "SignalWireSDKCaller",
            "compute_signature",
            "is_valid_signature",
        ]
    )
    # Every name exported before the namespaces existed keeps working, and is the same object.
    for namespace in (stores, callers):
        for name in namespace.__all__:
            if name in voice2fa_middleware.__all__:
                assert getattr(namespace, name) is getattr(voice2fa_middleware, name), name


def test_the_core_checks_no_concrete_caller_or_store_type() -> None:
    """Capabilities are asked of the protocols; no isinstance/type() of a concrete caller or
    store outside its own module."""
    concrete = ("ConsoleCaller", "SignalWireCaller", "SignalWireSDKCaller", "MemoryStore", "RedisStore")
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("isinstance", "type")
            ):
                text = ast.unparse(node)
                own = [c for c in concrete if c in text]
                assert not own or all(path.stem in ("memory", "redis", "callers") for _ in own), f"{name}: {text}"
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):
                text = ast.unparse(node)
                assert not any(f"is {c}" in text for c in concrete), f"{name}: {text}"


class _OnlyPlacesCalls:
    """A caller of an app's own, written before the capabilities existed."""

    def __init__(self) -> None:
        self.placed: list[str] = []

    async def place_call(self, *, to: str, from_: str, laml_url: str, status_url: str) -> str:
        self.placed.append(to)
        return "CA1"


@pytest.mark.anyio
async def test_a_caller_with_only_place_call_takes_part_on_equal_terms() -> None:
    caller = _OnlyPlacesCalls()
    app = Voice2FAMiddleware(_plain_asgi, identify=_alice, caller=caller, settings=Voice2FASettings(secret_key=SECRET))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        r = await client.get("/account")
    # Not protected here; the capabilities default for it: a real caller, never paused.
    assert r.status_code == 200
    assert app.caller.calls_nobody is False and app.caller.paused_for() == 0.0 and app.caller.played_calls() == ()
    assert await app.caller.place_call(to="+1", from_="+2", laml_url="u", status_url="s") == "CA1"
    assert caller.placed == ["+1"]
    # The development caller declares that it calls nobody: the dev phone exists for it only.
    from voice2fa_middleware import ConsoleCaller

    assert ConsoleCaller(signing_key="k").calls_nobody is True
