"""Every setting can come from the environment as VOICE2FA_<NAME>; unknown names are refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from voice2fa_middleware import ConfigurationError, Voice2FASettings
from voice2fa_middleware._settings import env_names

from .conftest import SECRET


def test_every_setting_has_an_environment_name() -> None:
    names = env_names()
    fields = [f.name for f in dataclasses.fields(Voice2FASettings) if f.init]
    assert sorted(names) == sorted(fields)
    assert names["code_ttl"] == "VOICE2FA_CODE_TTL" and names["from_number"] == "SIGNALWIRE_NUMBER"
    assert len(set(names.values())) == len(names)


def test_values_are_read_with_their_types() -> None:
    s = Voice2FASettings.from_env(
        {
            "VOICE2FA_SECRET_KEY": SECRET,
            "VOICE2FA_CODE_TTL": "60",
            "VOICE2FA_CODE_DIGITS": "8",
            "VOICE2FA_CALL_TIMEOUT": "4.5",
            "VOICE2FA_VOICEMAIL_GUARD": "false",
            "VOICE2FA_DEV_PAGES": "yes",
            "VOICE2FA_ALLOWED_COUNTRIES": "US, CA",
            "VOICE2FA_TRUSTED_PROXIES": "10.0.0.0/8,192.0.2.1",
            "VOICE2FA_PROTECTED_NO_STORE": "always",
            "VOICE2FA_LOGOUT_URL": "/logout",
        },
        env_file=None,
    )
    assert s.code_ttl == 60 and s.code_digits == 8 and s.call_timeout == 4.5
    assert s.voicemail_guard is False and s.dev_pages is True
    assert tuple(s.allowed_countries or ()) == ("US", "CA")
    assert tuple(s.trusted_proxies) == ("10.0.0.0/8", "192.0.2.1")
    assert s.protected_no_store == "always" and s.logout_url == "/logout"


def test_keywords_win_over_the_environment() -> None:
    s = Voice2FASettings.from_env({"VOICE2FA_CODE_TTL": "60"}, env_file=None, code_ttl=90)
    assert s.code_ttl == 90


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"VOICE2FA_CODE_TIL": "60"}, "VOICE2FA_CODE_TIL is not a known setting; did you mean VOICE2FA_CODE_TTL?"),
        ({"VOICE2FA_NONSENSE_XYZ": "1"}, "VOICE2FA_NONSENSE_XYZ is not a known setting"),
        ({"VOICE2FA_CODE_TTL": "soon"}, "VOICE2FA_CODE_TTL must be a whole number of seconds (got 'soon')"),
        ({"VOICE2FA_DEV_PAGES": "maybe"}, "VOICE2FA_DEV_PAGES must be true or false (got 'maybe')"),
        ({"VOICE2FA_CALL_TIMEOUT": "fast"}, "VOICE2FA_CALL_TIMEOUT must be a number of seconds (got 'fast')"),
        ({"VOICE2FA_REMEMBER_DAYS": "a month"}, "VOICE2FA_REMEMBER_DAYS must be a whole number of days"),
        ({"VOICE2FA_MAX_ATTEMPTS": "five"}, "VOICE2FA_MAX_ATTEMPTS must be a whole number (got 'five')"),
        (
            {"VOICE2FA_ALLOWED_COUNTRIES": "US,USA,UK"},
            "ISO 3166 alpha-2 region codes such as US, GB or FR; not 'USA', 'UK'",
        ),
        ({"VOICE2FA_SECRET": "x"}, "VOICE2FA_SECRET is not a known setting; did you mean VOICE2FA_SECRET_KEY?"),
        (
            {"VOICE2FA_SIGNING_KEY": "x"},
            "VOICE2FA_SIGNING_KEY is not a known setting; did you mean SIGNALWIRE_SIGNING_KEY?",
        ),
        ({"VOICE2FA_CODE_TTL": "3600"}, "code_ttl must be between 30 and 600"),
    ],
)
def test_bad_environments_are_refused_with_a_clear_message(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Voice2FASettings.from_env(environ, env_file=None)
    assert message in str(raised.value)


def test_a_dotenv_file_is_checked_too(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("VOICE2FA_RESEND_COOLDOWN=45\nVOICE2FA_RESNED=1\n")
    with pytest.raises(ConfigurationError, match="VOICE2FA_RESNED is not a known setting"):
        Voice2FASettings.from_env({}, env_file=env_file)
    env_file.write_text("VOICE2FA_RESEND_COOLDOWN=45\n")
    assert Voice2FASettings.from_env({}, env_file=env_file).resend_cooldown == 45


@pytest.mark.parametrize("name", ["VOICE2FA_FOO", "VOICE2FA_VOICES_X", "VOICE2FA_CODE", "VOICE2FA_TTL"])
def test_an_unknown_name_gets_no_far_fetched_suggestion(name: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Voice2FASettings.from_env({name: "1"}, env_file=None)
    assert f"{name} is not a known setting (see the settings reference)" in str(raised.value)


def test_allowed_countries_are_region_codes_in_code_too() -> None:
    assert Voice2FASettings(allowed_countries=["us", "GB"]).allowed_countries == ["us", "GB"]
    with pytest.raises(ConfigurationError, match="not 'USA'"):
        Voice2FASettings(allowed_countries=["USA"])
    with pytest.raises(ConfigurationError, match="a list of region codes"):
        Voice2FASettings(allowed_countries="US")
