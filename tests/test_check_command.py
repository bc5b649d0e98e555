"""``python -m voice2fa_middleware check``, run as an operator runs it, against the SignalWire
double and a running app: every problem at once, exit 0 only when ready, JSON for machines,
and a real test call that reads a test phrase."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from voice2fa_middleware import Voice2FAMiddleware, Voice2FASettings
from voice2fa_middleware.testing import LiveServer, SignalWireDouble, port_for_later

from .conftest import SECRET, identify


def _check(env: dict[str, str], *args: str, cwd: Path) -> tuple[int, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE2FA_", "SIGNALWIRE_"))}
    done = subprocess.run(
        [sys.executable, "-m", "voice2fa_middleware", "check", "--json", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout)


def _outcomes(report: Any) -> dict[str, str]:
    return {f["check"]: f["outcome"] for f in report["findings"]}


def test_a_ready_deployment_passes_and_a_test_call_reads_the_phrase(tmp_path: Path) -> None:
    with SignalWireDouble() as double:
        port = port_for_later()
        env = {**double.env(public_url=f"http://127.0.0.1:{port}"), "VOICE2FA_SECRET_KEY": SECRET}
        app = Starlette()
        app.add_middleware(
            Voice2FAMiddleware, identify=identify, settings=Voice2FASettings.from_env(env, env_file=None)
        )
        with LiveServer(app, port=port):
            code, report = _check(env, "--dev", cwd=tmp_path)  # a loopback http URL: development
            assert code == 0 and report["ok"] is True, report
            assert _outcomes(report) == {
                "settings": "ok",
                "secret key": "ok",
                "caller id": "ok",
                "store": "ok",
                "signalwire": "ok",
                "signing key": "ok",
                "public url": "ok",
            }
            code, report = _check(env, cwd=tmp_path)  # production wants https
            assert code == 1 and _outcomes(report)["public url"] == "problem", report
            code, report = _check(env, "--dev", "--call", "+12025550143", cwd=tmp_path)
            assert code == 0, report
            call = double.wait_for_calls(1)[-1]
            assert call.to == "+12025550143"
            assert any("This is a test call" in said for said in call.says), call.says


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    with SignalWireDouble(token="the-real-token") as double:
        env = {
            **double.env(public_url="http://127.0.0.1:9"),
            "SIGNALWIRE_TOKEN": "a-wrong-token",
            "SIGNALWIRE_NUMBER": "+19005551234",  # premium rate: not a caller id we call from
            "VOICE2FA_SECRET_KEY": SECRET,
            "VOICE2FA_REDIS_URL": "redis://127.0.0.1:1/0",
        }
        code, report = _check(env, "--dev", cwd=tmp_path)
    assert code == 1 and report["ok"] is False
    outcomes = _outcomes(report)
    assert outcomes["signalwire"] == "problem" and outcomes["store"] == "problem"
    assert outcomes["caller id"] == "problem" and outcomes["public url"] == "warning"
    messages = " ".join(f["message"] for f in report["findings"])
    assert "SIGNALWIRE_PROJECT / SIGNALWIRE_TOKEN" in messages


def test_bad_settings_are_listed_with_their_hints(tmp_path: Path) -> None:
    code, report = _check({"VOICE2FA_CODE_TIL": "60", "VOICE2FA_PUBLIC_URL": "http://app.example.com"}, cwd=tmp_path)
    assert code == 1
    messages = [f["message"] for f in report["findings"] if f["outcome"] == "problem"]
    assert any("did you mean VOICE2FA_CODE_TTL" in m for m in messages)
    assert any("VOICE2FA_PUBLIC_URL uses http://" in m for m in messages)


def _human(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE2FA_", "SIGNALWIRE_"))}
    return subprocess.run(
        [sys.executable, "-m", "voice2fa_middleware", "check", *args],
        env={**clean, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_human_output_and_console_script(tmp_path: Path) -> None:
    done = _human("--dev", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr  # console caller on loopback: ready, with warnings
    assert "WARNING  signalwire: no SignalWire credentials" in done.stdout
    assert done.stdout.strip().endswith("voice2fa check: ready for development")


def test_ready_means_ready_for_production(tmp_path: Path) -> None:
    """Nothing set is a laptop's setup: not "ready", and the list says what production needs."""
    done = _human(cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    for missing in ("secret key: VOICE2FA_SECRET_KEY is not set", "signalwire: no SignalWire credentials"):
        assert f"PROBLEM  {missing}" in done.stdout, done.stdout
    assert "PROBLEM  public url: VOICE2FA_PUBLIC_URL is not set" in done.stdout
    assert "voice2fa check: not ready: 3 problems" in done.stdout and "--dev" in done.stdout
    with SignalWireDouble() as double:
        https = {**double.env(public_url=f"https://127.0.0.1:{port_for_later()}"), "VOICE2FA_SECRET_KEY": SECRET}
        code, report = _check(https, cwd=tmp_path)
        assert code == 0 and report["ok"] is True, report  # the app not answering yet is a warning
        assert _outcomes(report)["public url"] == "warning"
        without_signing_key = {k: v for k, v in https.items() if k != "SIGNALWIRE_SIGNING_KEY"}
        code, report = _check(without_signing_key, cwd=tmp_path)
        assert code == 1 and _outcomes(report)["signing key"] == "problem", report


def test_a_named_env_file_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    done = _human("--env-file", "nope.env", cwd=tmp_path)
    assert done.returncode == 2 and "nope.env: no such file" in done.stderr, done.stdout + done.stderr
    (tmp_path / "here.env").write_text("VOICE2FA_CODE_TTL=60\n")
    assert _human("--dev", "--env-file", "here.env", cwd=tmp_path).returncode == 0


def test_settings_problems_in_plain_words_and_the_other_checks_still_run(tmp_path: Path) -> None:
    env = {
        "VOICE2FA_CODE_TTL": "abc",
        "VOICE2FA_FOO": "1",
        "VOICE2FA_ALLOWED_COUNTRIES": "USA",
        "VOICE2FA_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    code, report = _check(env, "--dev", cwd=tmp_path)
    assert code == 1
    messages = [f["message"] for f in report["findings"] if f["check"] == "settings"]
    assert "VOICE2FA_CODE_TTL must be a whole number of seconds (got 'abc')" in messages
    assert "VOICE2FA_FOO is not a known setting (see the settings reference)" in messages
    assert any("ISO 3166 alpha-2" in m and "'USA'" in m for m in messages), messages
    assert not any("invalid literal" in m or "did you mean" in m for m in messages), messages
    outcomes = _outcomes(report)
    assert outcomes["store"] == "problem"  # checked: Redis does not answer on port 1
    assert outcomes["signalwire"] == "warning" and outcomes["public url"] == "warning"


def test_a_redis_url_redis_cannot_use_is_named_not_a_traceback(tmp_path: Path) -> None:
    for url, words in (
        ("redis://localhost:99999", "the port must be a number from 1 to 65535"),
        ("redis://localhost:abc/0", "the port must be a number from 1 to 65535"),
        ("redis+sentinel://localhost:26379", "a Sentinel URL ends with /service_name"),
        ("redis+sentinel://localhost:99999/mymaster", "the port must be a number from 1 to 65535"),
    ):
        done = _human("--dev", cwd=tmp_path, env={"VOICE2FA_REDIS_URL": url, "VOICE2FA_SECRET_KEY": SECRET})
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stdout + done.stderr
        assert f"PROBLEM  store: VOICE2FA_REDIS_URL is not a usable Redis URL: {words}" in done.stdout, done.stdout


# -- voice2fa check --standards -------------------------------------------------------------------


def _standards(env: dict[str, str], *args: str, cwd: Path) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE2FA_", "SIGNALWIRE_"))}
    done = subprocess.run(
        [sys.executable, "-m", "voice2fa_middleware", "check", "--standards", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout


def test_the_standards_report_judges_the_settings(tmp_path: Path) -> None:
    env = {"VOICE2FA_SECRET_KEY": SECRET, "VOICE2FA_PUBLIC_URL": "http://127.0.0.1:8000"}
    status, out = _standards(env, "--json", cwd=tmp_path)
    report = json.loads(out)
    rows = {r["id"]: r for r in report["requirements"]}
    assert status == 0 and report["ok"] is True
    assert {k: r["outcome"] for k, r in rows.items()} == {
        "code_lifetime": "pass",
        "code_entropy": "pass",
        "single_use": "pass",
        "attempt_limit": "pass",
        "call_rate_limits": "pass",
        "no_voip": "pass",
        "alternative": "warn",
        "notifications": "warn",
        "webhook_signatures": "pass",
        "bound_to_request": "pass",
        "https": "warn",
    }
    assert "cannot tell from settings" in rows["alternative"]["detail"] and rows["alternative"]["fix"].startswith(
        "recovery_codes="
    )
    assert all(r["reference"] and r["requirement"] and r["fix"] for r in rows.values())
    weak = {**env, "VOICE2FA_ALLOW_VOIP": "true", "VOICE2FA_RECOVERY_CODES": "0", "VOICE2FA_LOCKOUT_WINDOW": "60"}
    status, out = _standards(weak, cwd=tmp_path)
    assert status == 1
    lines = {line.split(":")[0].split()[-1]: line for line in out.splitlines() if line[:4] in ("PASS", "WARN", "FAIL")}
    assert lines["no_voip"].startswith("FAIL") and "[allow_voip, lookup_line_type]" in lines["no_voip"]
    assert lines["alternative"].startswith("FAIL") and lines["attempt_limit"].startswith("FAIL")
    assert "600 per hour" in lines["attempt_limit"]
    assert out.rstrip().endswith("requirements failed")


def test_the_middleware_knows_what_the_settings_cannot_tell() -> None:
    from voice2fa_middleware import MemoryRecoveryCodes

    settings = Voice2FASettings(secret_key=SECRET, public_url="https://app.example.com")
    bare = Voice2FAMiddleware(Starlette(), identify=identify, settings=settings)
    given = Voice2FAMiddleware(
        Starlette(),
        identify=identify,
        settings=settings,
        recovery_codes=MemoryRecoveryCodes(),
        on_notify=lambda user_id, kind, detail: None,
    )
    assert {r.id: r.outcome for r in bare.standards()}["alternative"] == "fail"
    outcomes = {r.id: r.outcome for r in given.standards()}
    assert outcomes["alternative"] == outcomes["notifications"] == outcomes["https"] == "pass"
    assert "fail" not in outcomes.values() and "warn" not in outcomes.values()
