"""Sessions: tests (each installed Python 3.10-3.13), tests_lowest, tests_newest, tests_fastapi_users, package,
lint, typing, docs (the full matrix, what CI runs); quick (the suite once, in minutes); also demo, bench, load, soak.

Every pytest run is parallel (pytest-xdist, one worker per core). "tests" runs on 3.10-3.12 and
"tests_newest" on 3.13 with the newest releases of everything; the browser tests run there only,
since what they check does not depend on the Python."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

nox.options.sessions = [
    "tests",
    "tests_lowest",
    "tests_newest",
    "tests_fastapi_users",
    "package",
    "lint",
    "typing",
    "docs",
]
nox.options.error_on_missing_interpreters = False
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = Path(__file__).with_name("pyproject.toml").read_text()
PYTHONS = re.findall(r"Programming Language :: Python :: (3\.\d+)", PYPROJECT)


def _pyenv_pythons() -> None:
    """Let pyenv's shims run each supported Python: pyenv runs only the selected version, and
    nox would skip the others as "interpreter not found". As .ci/run does, PYENV_VERSION lists
    the selected version first (``python3`` stays what it was), then the newest 3.X of each."""
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return
    run = {"capture_output": True, "text": True, "check": False}
    current = os.environ.get("PYENV_VERSION") or subprocess.run([pyenv, "version-name"], **run).stdout.strip()  # noqa: S603
    installed = subprocess.run([pyenv, "versions", "--bare"], **run).stdout.split()  # noqa: S603
    chosen = [v for v in current.split(":") if v]
    for python in PYTHONS:
        found = [v for v in installed if re.fullmatch(re.escape(python) + r"\.\d+", v)]
        if found and not any(v.startswith(python + ".") for v in chosen):
            chosen.append(max(found, key=lambda v: int(v.rsplit(".", 1)[1])))
    os.environ["PYENV_VERSION"] = ":".join(chosen)


_pyenv_pythons()


# pytest-xdist: one worker per core (two on CI's machine); "-p no:cacheprovider" keeps the
# tree clean.
PARALLEL = ["-n", "auto", "-p", "no:cacheprovider"]


@nox.session(python=PYTHONS[:-1])
def tests(session: nox.Session) -> None:
    """The test suite, with every extra (redis, the signalwire SDK oracle), on each supported
    Python but the newest, which "tests_newest" runs with the newest releases of everything
    (the browser tests there): the same suite twice on one Python would only cost time."""
    session.install("-e", ".[test,signalwire]")
    session.run("pytest", *PARALLEL, "-m", "not browser", *session.posargs)


@nox.session(python=False)
def quick(session: nox.Session) -> None:
    """The whole suite once, on the Python that runs nox, in a virtual environment of its own
    (.venv-quick): a few minutes on two cores, for the edit-test loop."""
    venv = Path(".venv-quick")
    if not (venv / "bin" / "python").exists():
        session.run("python3", "-m", "venv", str(venv))
    session.run(str(venv / "bin" / "pip"), "install", "-q", "-e", ".[test]")
    session.run(str(venv / "bin" / "pytest"), *PARALLEL, *session.posargs)


# fastapi-users needs PyJWT 2; the signalwire SDK (the oracle in "tests") pins PyJWT 1.7.
FASTAPI_USERS = ["fastapi-users[sqlalchemy]>=13", "aiosqlite>=0.19"]


@nox.session(python=PYTHONS[-1])
def tests_fastapi_users(session: nox.Session) -> None:
    """The fastapi-users example, end to end (an environment of its own: see FASTAPI_USERS)."""
    session.install("-e", ".[test]", *FASTAPI_USERS)
    session.run("pytest", "-p", "no:cacheprovider", "tests/test_fastapi_users.py", *session.posargs)


@nox.session(python=PYTHONS[0])
def tests_lowest(session: nox.Session) -> None:
    """The suite on the lowest release of every dependency pyproject.toml allows (uv's
    lowest-direct resolution), on the oldest Python: the floors we state are true."""
    session.install("uv")
    env = {"VIRTUAL_ENV": session.virtualenv.location}
    session.run("uv", "pip", "install", "--resolution", "lowest-direct", "-e", ".[test]", env=env)
    session.run("uv", "pip", "list", env=env)
    # The browser tests are left out: Playwright's floor predates the Chromium Debian ships.
    session.run("pytest", *PARALLEL, "-m", "not browser", *session.posargs)


@nox.session(python=PYTHONS[-1])
def tests_newest(session: nox.Session) -> None:
    """The suite on the newest release of every dependency (no signalwire SDK, whose pins
    hold some back), on the newest Python, the browser tests included (Chromium)."""
    session.install("--upgrade", "-e", ".[test]")
    session.run("pytest", *PARALLEL, *session.posargs)


@nox.session(python=PYTHONS[-1])
def tests_minimal(session: nox.Session) -> None:
    """The suite with no optional extra: Redis and SDK tests must skip, not fail."""
    session.install("-e", ".[testing,examples]", "hypothesis", "respx")
    session.run("pytest", *PARALLEL, "-m", "not redis and not oracle", *session.posargs, env={"CI": ""})


@nox.session
def package(session: nox.Session) -> None:
    """Build the sdist and wheel; twine check; the wheel holds what it must and nothing else."""
    import glob
    import shutil

    shutil.rmtree("dist", ignore_errors=True)
    session.install("build", "twine")
    session.run("python", "-m", "build")
    session.run("twine", "check", "--strict", *glob.glob("dist/*"))
    session.run("python", "tests/check_wheel.py", *glob.glob("dist/*.whl"))


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "voice2fa_middleware", "tests", "examples", "benchmarks", "noxfile.py")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict on the package and on the examples (a typed usage check)."""
    session.install("-e", ".[test]", "mypy", *FASTAPI_USERS)
    session.run("mypy", "--strict", "voice2fa_middleware")
    session.run("mypy", "--strict", "examples")


@nox.session
def demo(session: nox.Session) -> None:
    """The Starlette example on uvicorn, console caller (no credentials needed)."""
    session.install("-e", ".[examples]")
    port = os.environ.get("PORT", "8000")
    session.log(f"voice2fa demo: open http://127.0.0.1:{port}/ and sign in as demo / demo")
    session.log(f"the console caller prints each call here; hear it at http://127.0.0.1:{port}/voice2fa/dev/phone")
    session.run("uvicorn", "examples.starlette_app:app", "--host", "127.0.0.1", "--port", port, *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Overhead next to a bare app, measured with wrk over loopback (needs wrk and redis-server);
    then pacing: 50 users starting challenges at once against a double taking 5 calls a second."""
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/run.py", *session.posargs)
    session.run("python", "benchmarks/pacing.py")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site: mkdocs build --strict (links and anchors checked), then every
    code sample of the site run by tests/test_docs.py."""
    session.install("-e", ".[test]", "mkdocs-material>=9.5", "mkdocstrings-python>=1.10")
    session.run("mkdocs", "build", "--strict")
    session.run("pytest", "tests/test_docs.py", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def load(session: nox.Session) -> None:
    """The whole flow for N users at once (LOAD_USERS, default 300) on 2 uvicorn workers and
    RedisStore, against the SignalWire double; then again with Redis killed and restarted,
    and with Create Call failing for 10 s. Needs redis-server. Not part of the test suite."""
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/load.py", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """New users doing the flow at a fixed rate (SOAK_RATE/s, default 3) for SOAK_SECONDS
    (default 300): worker RSS, Redis used_memory and DBSIZE at start, middle and end."""
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/load.py", "--soak", *session.posargs)
