"""The demo's container: Dockerfile, .dockerignore, compose.yaml and the documentation page on them
(docs/getting-started/container.md).

No Docker is needed: the Dockerfile's install command runs in a fresh virtual environment on a copy
of the build context (what .dockerignore lets through), and the image's CMD, its health check and
compose.yaml's two-worker command line run from that copy as the container runs them, with the
environment the Dockerfile sets, on a free port. Compose's Redis is the tests' own redis-server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from voice2fa_middleware.testing import port_for_later

from . import conftest
from .conftest import ROOT, SECRET, ServerProcess, csrf_of, wrong_for

# -- the Dockerfile ----------------------------------------------------------------------------


@dataclass
class Dockerfile:
    instructions: list[tuple[str, str]]  # (KEYWORD, arguments), continuations joined, comments dropped

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        instructions, pending = [], ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue  # Docker drops comment lines, inside a continuation too
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            keyword, _, arguments = (pending + line).partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            pending = ""
        assert not pending, "the Dockerfile ends inside a continuation"
        return cls(instructions)

    def all(self, keyword: str) -> list[str]:
        return [arguments for k, arguments in self.instructions if k == keyword]

    def index(self, keyword: str, contains: str = "") -> int:
        """Where the last ``keyword`` instruction (with ``contains`` in it) is."""
        found = [n for n, (k, arguments) in enumerate(self.instructions) if k == keyword and contains in arguments]
        assert found, f"the Dockerfile has no {keyword} {contains}".rstrip()
        return found[-1]

    @property
    def base(self) -> str:
        [base] = self.all("FROM")  # one stage
        return base

    @property
    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for arguments in self.all("ENV"):
            for word in shlex.split(arguments):
                name, equals, value = word.partition("=")
                assert equals, f"ENV {arguments}: write ENV NAME=value"
                env[name] = value
        return env

    @property
    def install(self) -> str:
        """The shell command of the RUN that installs the package (Docker runs it with /bin/sh -c)."""
        [install] = [run for run in self.all("RUN") if "pip install" in run]
        return install

    @property
    def cmd(self) -> list[str]:
        [cmd] = self.all("CMD")
        assert cmd.startswith("["), "CMD must be in exec form, so uvicorn is PID 1 and gets docker stop's SIGTERM"
        return list(json.loads(cmd))

    @property
    def healthcheck(self) -> list[str]:
        [check] = self.all("HEALTHCHECK")
        _, _, command = check.partition("CMD ")
        assert command.startswith("["), "HEALTHCHECK CMD in exec form: the slim image's /bin/sh is not needed"
        return list(json.loads(command))


DOCKERFILE = Dockerfile.read(ROOT / "Dockerfile")
PINNED = re.compile(r"(?P<name>[a-z0-9./_-]+):(?P<tag>[\w.-]+)(?:@sha256:[0-9a-f]{64})?")


def with_port(cmd: list[str], port: int) -> list[str]:
    """``cmd`` with the value of its ``--port`` changed to ``port``."""
    assert "--port" in cmd, cmd
    n = cmd.index("--port") + 1
    return [*cmd[:n], str(port), *cmd[n + 1 :]]


def test_base_image_is_pinned() -> None:
    match = PINNED.fullmatch(DOCKERFILE.base)
    assert match, f"FROM {DOCKERFILE.base}: pin a tag (python:3.12.14-slim-bookworm), better with its @sha256 digest"
    assert match["tag"] != "latest" and re.search(r"\d+\.\d+", match["tag"]), DOCKERFILE.base


def test_image_runs_as_an_unprivileged_user() -> None:
    users = DOCKERFILE.all("USER")
    assert users, "the Dockerfile has no USER: the demo would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    # Installed as root (the code is not the app's to change), served as the user.
    assert DOCKERFILE.index("RUN", "pip install") < DOCKERFILE.index("USER") < DOCKERFILE.index("CMD")


def test_image_serves_on_its_exposed_port_with_a_health_check_there() -> None:
    cmd = DOCKERFILE.cmd
    assert cmd[:2] == ["uvicorn", "examples.starlette_app:app"], cmd
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"  # reachable through docker run -p
    port = cmd[cmd.index("--port") + 1]
    assert DOCKERFILE.all("EXPOSE") == [port]
    assert any(f"127.0.0.1:{port}/" in part for part in DOCKERFILE.healthcheck), DOCKERFILE.healthcheck


# -- the documentation's page ---------------------------------------------------------------------

CONTAINER_PAGE = ROOT / "docs" / "getting-started" / "container.md"


def container_section_code(markdown: str) -> list[str] | None:
    """The lines of the fenced blocks under the first heading that mentions "container" (down to
    the next heading of its level or higher); ``None`` when there is no such heading."""
    found, level, fenced, code = False, 0, False, []
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        heading = None if fenced else re.match(r"(#{1,6})\s+(.*)", line)
        if heading:
            if found and len(heading[1]) <= level:
                break
            if not found and "container" in heading[2].lower():
                found, level = True, len(heading[1])
        elif found and fenced:
            code.append(line)
    return code if found else None


def shell_words(line: str) -> list[str] | None:
    try:
        return shlex.split(line.strip().removeprefix("$ "), comments=True)
    except ValueError:
        return None


def test_readme_shows_the_commands_the_image_runs() -> None:
    code = container_section_code(CONTAINER_PAGE.read_text())
    assert code is not None, (
        f'{CONTAINER_PAGE.name} has no section on the container: add one under a heading that says "container" '
        '(such as "# The demo in a container"), with the Dockerfile\'s install and start commands '
        f"in a fenced block:\n    {DOCKERFILE.install}\n    {shlex.join(DOCKERFILE.cmd)}"
    )
    shown = [words for words in map(shell_words, code) if words]
    for what, words in (("install", shlex.split(DOCKERFILE.install)), ("start", DOCKERFILE.cmd)):
        assert words in shown, (
            f"{CONTAINER_PAGE.name}'s container section does not show the Dockerfile's {what} command, "
            f"{shlex.join(words)!r}, in a fenced block (it shows: {[shlex.join(w) for w in shown]})"
        )


# -- .dockerignore: the build context --------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus ``**``) as a regular expression."""
    out, n = "", 0
    while n < len(pattern):
        if pattern.startswith("**/", n):
            out, n = out + "(?:.*/)?", n + 3
        elif pattern.startswith("**", n):
            out, n = out + ".*", n + 2
        elif pattern[n] == "*":
            out, n = out + "[^/]*", n + 1
        elif pattern[n] == "?":
            out, n = out + "[^/]", n + 1
        elif pattern[n] == "[" and "]" in pattern[n:]:
            end = pattern.index("]", n)
            members = pattern[n + 1 : end]
            out, n = out + "[" + ("^" + members[1:] if members.startswith(("!", "^")) else members) + "]", end + 1
        else:
            out, n = out + re.escape(pattern[n]), n + 1
    return re.compile(out)


@dataclass
class DockerIgnore:
    patterns: list[tuple[bool, str, re.Pattern[str]]]  # (re-include?, pattern, regex)

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        patterns = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = line.lstrip("!").strip().strip("/")
            patterns.append((include, pattern, _pattern(pattern)))
        return cls(patterns)

    def ignores(self, path: str) -> bool:
        """Whether the context leaves ``path`` out: the last pattern matching it or one of its
        parent folders decides, as Docker does."""
        parts = path.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        ignored = False
        for include, _, regex in self.patterns:
            if any(regex.fullmatch(p) for p in prefixes):
                ignored = not include
        return ignored

    def may_hold_included(self, folder: str) -> bool:
        return any(include and pattern.startswith(folder + "/") for include, pattern, _ in self.patterns)

    def copy_context(self, source: Path, target: Path) -> list[str]:
        """Copy what ``docker build source`` sends; the paths copied."""
        copied = []
        for folder, dirs, files in os.walk(source):
            here = Path(folder).relative_to(source).as_posix()
            prefix = "" if here == "." else here + "/"
            dirs[:] = [d for d in dirs if not self.ignores(prefix + d) or self.may_hold_included(prefix + d)]
            for name in files:
                if not self.ignores(prefix + name):
                    (target / prefix).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(Path(folder) / name, target / prefix / name)
                    copied.append(prefix + name)
        return copied


DOCKERIGNORE = DockerIgnore.read(ROOT / ".dockerignore")


def test_dockerignore_keeps_secrets_and_clutter_out_of_the_image() -> None:
    for path in (
        ".env",
        ".git/config",
        ".nox/tests-3-12/bin/python",
        ".venv/bin/python",
        ".hypothesis/examples/x",
        ".mypy_cache/3.10/x.json",
        ".pytest_cache/v/x",
        "test-artifacts/verify.png",
        "dist/voice2fa_middleware-0.1.0-py3-none-any.whl",
        "tests/test_container.py",
        "voice2fa_middleware/__pycache__/_settings.cpython-312.pyc",
        "examples/__pycache__/starlette_app.cpython-312.pyc",
    ):
        assert DOCKERIGNORE.ignores(path), f"{path} would be sent to docker build"
    for path in (
        "pyproject.toml",
        "README.md",
        "voice2fa_middleware/__init__.py",
        "voice2fa_middleware/templates/voice2fa/verify.html",
        "examples/starlette_app.py",
    ):
        assert not DOCKERIGNORE.ignores(path), f"{path} is needed in the image but .dockerignore leaves it out"


# -- compose.yaml ------------------------------------------------------------------------------


def _scalar(text: str) -> Any:
    if text.startswith(("[", '"')):
        return json.loads(text)
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return {"true": True, "false": False, "null": None}.get(text, text)


def load_yaml_subset(text: str) -> Any:
    """The YAML compose.yaml is written in: block mappings and sequences, full-line comments,
    quoted and plain scalars, flow sequences of double-quoted strings. (PyYAML is not a dependency
    of every test environment; where it is installed, it must read the file the same way.)"""
    rows = [
        (len(raw) - len(raw.lstrip(" ")), raw.strip())
        for raw in text.splitlines()
        if raw.strip() and not raw.strip().startswith("#")
    ]

    def block(n: int, indent: int) -> tuple[Any, int]:
        if rows[n][1].startswith("- "):
            items = []
            while n < len(rows) and rows[n][0] == indent and rows[n][1].startswith("- "):
                items.append(_scalar(rows[n][1][2:].strip()))
                n += 1
            return items, n
        mapping: dict[str, Any] = {}
        while n < len(rows) and rows[n][0] == indent:
            key, colon, rest = rows[n][1].partition(":")
            assert colon, f"compose.yaml: {rows[n][1]!r} is not a key: value line"
            n += 1
            if rest.strip():
                mapping[key] = _scalar(rest.strip())
            elif n < len(rows) and rows[n][0] > indent:
                mapping[key], n = block(n, rows[n][0])
            else:
                mapping[key] = None
        return mapping, n

    value, end = block(0, rows[0][0])
    assert end == len(rows), f"compose.yaml: {rows[end][1]!r} is outside the YAML this test reads"
    try:
        import yaml  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return value
    assert yaml.safe_load(text) == value, "compose.yaml: PyYAML reads it differently from this test"
    return value


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}``."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, word = match[1], match[2], match[3] or ""
        if env.get(name):
            return env[name]
        if operator == ":?":
            raise ValueError(f"required variable {name} is missing a value: {word}")
        return word

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", substitute, value)


COMPOSE = load_yaml_subset((ROOT / "compose.yaml").read_text())


def test_compose_runs_the_image_with_two_workers_and_a_healthy_redis() -> None:
    services = COMPOSE["services"]
    demo, redis = services["demo"], services["redis"]
    assert demo["build"] == "."
    command = demo["command"]
    assert command[: len(DOCKERFILE.cmd)] == DOCKERFILE.cmd, "compose runs the image's command, plus workers"
    assert command[command.index("--workers") + 1] == "2"
    assert demo["ports"] == ["8000:8000"]
    assert demo["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert redis["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    match = PINNED.fullmatch(redis["image"])
    assert match and match["tag"] != "latest", redis["image"]
    assert "ports" not in redis, "Redis has no password: keep it on the compose network"
    env = demo["environment"]
    assert urlsplit(env["VOICE2FA_REDIS_URL"]).hostname == "redis"
    # No secret key, no start: Redis needs the same key in every worker.
    with pytest.raises(ValueError, match="VOICE2FA_SECRET_KEY"):
        interpolate(env["VOICE2FA_SECRET_KEY"], {})
    assert interpolate(env["VOICE2FA_SECRET_KEY"], {"VOICE2FA_SECRET_KEY": SECRET}) == SECRET


# -- the image, installed and run without Docker ---------------------------------------------------


@dataclass
class Installed:
    app: Path  # the WORKDIR: a copy of the build context, installed from
    venv: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The image's environment: the Dockerfile's ENV, its Python first on PATH."""
        bin_dir = self.venv / "bin"
        path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**DOCKERFILE.env, "PATH": path, "VIRTUAL_ENV": str(self.venv), **extra}


def _clean_environ() -> dict[str, str]:
    """This process's environment without settings the image would not have."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VOICE2FA_", "SIGNALWIRE_")) and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The Dockerfile's install command, run as docker build runs it (``/bin/sh -c``, in the
    WORKDIR holding the build context), in a fresh virtual environment (packages from PyPI)."""
    root = tmp_path_factory.mktemp("image")
    image = Installed(app=root / "app", venv=root / "venv")
    copied = DOCKERIGNORE.copy_context(ROOT, image.app)
    assert "pyproject.toml" in copied and "examples/starlette_app.py" in copied, copied
    subprocess.run([sys.executable, "-m", "venv", str(image.venv)], check=True, timeout=300)
    env = {**_clean_environ(), **image.env()}
    done = subprocess.run(
        ["/bin/sh", "-c", DOCKERFILE.install], cwd=image.app, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"{DOCKERFILE.install} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    # Installed, not merely importable from the WORKDIR: with the extras the demo and compose use.
    probe = "import fastapi, redis, uvicorn, voice2fa_middleware as m; print(m.__file__)"
    where = subprocess.run(
        ["python", "-c", probe], cwd=root, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert Path(where.stdout.strip()).is_relative_to(image.venv), where.stdout
    return image


@pytest.fixture
def container(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ServerProcess]]:
    """``start(cmd, installed, env, port)``: ``cmd`` run in the image's WORKDIR with the image's
    environment plus ``env``, ready once ``/`` answers; stopped after the test."""
    for name in os.environ.keys() - _clean_environ().keys():
        monkeypatch.delenv(name)
    started: list[ServerProcess] = []

    def start(cmd: list[str], image: Installed, env: dict[str, str], port: int) -> ServerProcess:
        with monkeypatch.context() as patch:
            patch.setattr(conftest, "ROOT", image.app)  # ServerProcess runs its command in conftest.ROOT
            server = conftest.ServerProcess(cmd, image.env(**env), port)
        started.append(server)
        if Path("/proc/self/cwd").exists():  # the installed copy is what runs, not this checkout
            assert Path(f"/proc/{server.proc.pid}/cwd").resolve() == image.app.resolve()
        return server

    yield start
    for server in started:
        server.stop()


def sign_in(client: httpx.Client) -> None:
    r = client.post("/login", data={"username": "demo", "password": "demo"})
    assert r.status_code == 303, r.text


SPOKEN = re.compile(r"console caller[^\n]*call to [^\n]*\n((?:[ \t]+[^\n]*\n)+)")


def spoken_code(server: ServerProcess, calls: int = 1, digits: int = 6) -> str:
    """The code the ``calls``-th console call said, read from the server's output, as someone
    reading ``docker logs`` does (the dev phone answers loopback clients only)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        said = SPOKEN.findall(server.output())
        if len(said) >= calls:
            numbers = [re.sub(r"\D", "", line) for line in said[calls - 1].splitlines()]
            code = next((n for n in numbers if len(n) == digits), None)
            assert code, said[calls - 1]
            return code
        time.sleep(0.1)
    raise AssertionError("no console call in the output:\n" + server.output())


def test_image_installs_and_serves_the_demo(installed: Installed, container: Callable[..., ServerProcess]) -> None:
    port = port_for_later()
    # As the container page's docker run: the CMD as written (0.0.0.0), a secret key from the environment.
    app = container(with_port(DOCKERFILE.cmd, port), installed, {"VOICE2FA_SECRET_KEY": SECRET}, port)
    client = httpx.Client(base_url=app.url, timeout=20)
    assert client.get("/").status_code == 200

    health = [part.replace(":8000/", f":{port}/") for part in DOCKERFILE.healthcheck]
    assert health != DOCKERFILE.healthcheck, DOCKERFILE.healthcheck
    env = {**_clean_environ(), **installed.env()}
    assert subprocess.run(health, env=env, capture_output=True, timeout=30).returncode == 0
    down = [part.replace(":8000/", f":{port_for_later()}/") for part in DOCKERFILE.healthcheck]
    assert subprocess.run(down, env=env, capture_output=True, timeout=30).returncode != 0

    assert client.get("/account").headers["location"].startswith("/login")  # anonymous: the app's sign-in
    sign_in(client)
    r = client.get("/account")
    assert r.status_code == 303 and r.headers["location"] == "/voice2fa/verify?next=%2Faccount"
    page = client.get(r.headers["location"])
    assert page.status_code == 200 and "Verify it" in page.text
    code = spoken_code(app)
    ok = client.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf_of(page.text), "next": "/account"})
    assert ok.status_code == 303 and ok.headers["location"] == "/account"
    assert "you passed the voice check" in client.get("/account").text
    assert "CONSOLE CALLER" in app.output()
    assert "VOICE2FA_SECRET_KEY is not set" not in app.output()


@pytest.mark.redis
def test_compose_two_workers_share_a_challenge_through_redis(
    installed: Installed, container: Callable[..., ServerProcess], redis_server: Any
) -> None:
    demo = COMPOSE["services"]["demo"]
    env = {name: interpolate(value, {"VOICE2FA_SECRET_KEY": SECRET}) for name, value in demo["environment"].items()}
    # The tests' redis-server in place of the redis service (a database of its own: other tests
    # run the demo on the same server).
    redis_url = urlsplit(env["VOICE2FA_REDIS_URL"])
    env["VOICE2FA_REDIS_URL"] = redis_url._replace(netloc=urlsplit(redis_server.url).netloc, path="/7").geturl()
    port = port_for_later()
    app = container(with_port(demo["command"], port), installed, env, port)
    # A new connection for every request: the kernel hands each to either worker.
    client = httpx.Client(base_url=app.url, timeout=20, limits=httpx.Limits(max_keepalive_connections=0))
    sign_in(client)
    r = client.get("/account")
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"])
    assert page.status_code == 200 and "Verify it" in page.text
    code = spoken_code(app)

    # Both workers answer: only the one that placed the call has it on its dev phone.
    answers: set[bool] = set()
    deadline = time.monotonic() + 20
    while answers != {True, False} and time.monotonic() < deadline:
        answers.add(bool(client.get("/voice2fa/dev/calls").json()["calls"]))
    assert answers == {True, False}, f"one worker answered every request ({answers}):\n{app.output()}"

    csrf = csrf_of(page.text)
    for left in (4, 3):  # the attempts are counted in Redis, whichever worker answers
        bad = client.post("/voice2fa/verify", data={"code": wrong_for(code), "csrf_token": csrf})
        assert bad.status_code == 400 and f"{left} attempts left" in bad.text, bad.text
    ok = client.post("/voice2fa/verify", data={"code": code, "csrf_token": csrf})
    assert ok.status_code == 303, ok.text
    assert all(client.get("/account").status_code == 200 for _ in range(10))
