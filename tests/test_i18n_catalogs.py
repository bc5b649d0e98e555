"""The gettext catalogs: every language has every message with the English placeholders, in
every plural form; the committed .mo files are the compiled .po; plurals, durations, digits
and <Say> codes per language; an app's own catalogs over ours."""

from __future__ import annotations

import gettext
import io
import re
import string
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from tests.conftest import Harness, csrf_of, wrong_for
from voice2fa_middleware._errors import ConfigurationError
from voice2fa_middleware._i18n.catalogs import (
    DEFAULT_TRANSLATIONS,
    LANGUAGES,
    MESSAGES,
    SPEECH_LANGUAGES,
    Translations,
    format_duration,
    negotiate,
    normalize_language,
    spoken_digits,
    translate,
    translate_n,
)
from voice2fa_middleware._i18n.messages import MESSAGES as SOURCE
from voice2fa_middleware._telephony.laml import LamlBuilder
from voice2fa_middleware._telephony.simulator import SimulatedCall, _play

LOCALE = Path(__file__).resolve().parent.parent / "voice2fa_middleware" / "locale"
LOCALES = sorted(language.locale for language in LANGUAGES.values())


def placeholders(text: str) -> set[str]:
    names = set()
    for _literal, name, spec, conversion in string.Formatter().parse(text):
        if name is not None:
            assert name.isidentifier(), f"{text!r}: only named placeholders ({{{name}}})"
            assert not spec and not conversion, f"{text!r}: no format spec or conversion"
            names.add(name)
    return names


def read_catalog(locale: str) -> Catalog:
    with (LOCALE / locale / "LC_MESSAGES" / "voice2fa.po").open("rb") as f:
        return read_po(f, locale=locale, domain="voice2fa")


# -- the catalogs -----------------------------------------------------------------------------


def test_every_language_has_a_catalog_and_nothing_else_is_there() -> None:
    found = sorted(p.parent.parent.name for p in LOCALE.glob("*/LC_MESSAGES/voice2fa.po"))
    assert found == LOCALES
    assert len(LANGUAGES) == 10


def test_the_template_holds_every_message_of_the_source() -> None:
    with (LOCALE / "voice2fa.pot").open("rb") as f:
        template = read_po(f)
    entries = {(m.context, m.id if isinstance(m.id, str) else tuple(m.id)) for m in template if m.id}
    expected = {(m.key, m.singular if m.plural is None else (m.singular, m.plural)) for m in SOURCE.values()}
    assert entries == expected, "run the extract and update commands of voice2fa_middleware/locale/README.md"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_catalog_has_every_message_with_the_english_placeholders(locale: str) -> None:
    catalog = read_catalog(locale)
    assert not catalog.fuzzy, "a fuzzy catalog header: pybabel compile would skip the file"
    found = {m.context: m for m in catalog if m.id}
    assert set(found) == set(SOURCE), "missing or extra messages (by msgctxt)"
    for key, source in SOURCE.items():
        entry = found[key]
        assert "fuzzy" not in entry.flags, f"{locale} {key}: fuzzy"
        if source.plural is None:
            assert entry.id == source.singular, f"{locale} {key}: stale English text"
            assert isinstance(entry.string, str) and entry.string.strip(), f"{locale} {key}: untranslated"
            assert placeholders(entry.string) == placeholders(source.singular), f"{locale} {key}: {entry.string!r}"
            continue
        assert tuple(entry.id) == (source.singular, source.plural), f"{locale} {key}: stale English text"
        expected = placeholders(source.singular)
        assert expected == placeholders(source.plural) and len(expected) == 1, f"{key}: one count placeholder"
        forms = entry.string
        assert isinstance(forms, tuple) and len(forms) == catalog.num_plurals, f"{locale} {key}: {forms!r}"
        for form in forms:
            assert form.strip(), f"{locale} {key}: an empty plural form"
            assert placeholders(form) == expected, f"{locale} {key}: {form!r}"


# Whole numbers a count can take: CLDR's "many" (French, Spanish, Italian, Portuguese) is whole
# millions; "one" is 0 and 1 in French, Brazilian Portuguese and Hindi.
COUNTS = [*range(1001), 10**6, 10**6 + 1, 2 * 10**6, 10**9]


@pytest.mark.parametrize("locale", LOCALES)
def test_each_catalogs_plural_rule_gives_each_cldr_category_its_own_form(locale: str) -> None:
    """The header's ``plural=`` against the CLDR rule of the Babel installed (any we allow:
    Babel 2.19 turned the CLDR rules into the gettext headers it writes, older ones kept a
    shorter table), compared by what they choose for each count, not as text."""
    catalog = read_catalog(locale)
    choose = gettext.c2py(catalog.plural_expr)
    category = Locale.parse(locale).plural_form
    forms: dict[str, set[int]] = {}
    for n in COUNTS:
        forms.setdefault(category(n), set()).add(choose(n))
    assert all(len(chosen) == 1 for chosen in forms.values()), f"{locale}: a category split over forms {forms}"
    assert sorted(form for (form,) in forms.values()) == list(range(catalog.num_plurals)), f"{locale}: {forms}"


@pytest.mark.parametrize(
    ("language", "zero", "million"),
    [
        ("en", "0 attempts left.", "1000000 attempts left."),
        ("fr", "Il vous reste 0 essai.", "Il vous reste 1000000 essais."),
        ("pt", "Resta 0 tentativa.", "Restam 1000000 tentativas."),
        ("hi", "0 प्रयास शेष है।", "1000000 प्रयास शेष हैं।"),
        ("es", "Quedan 0 intentos.", "Quedan 1000000 intentos."),
        ("it", "Restano 0 tentativi.", "Restano 1000000 tentativi."),
    ],
)
def test_zero_and_a_million_take_the_languages_form(language: str, zero: str, million: str) -> None:
    assert translate_n(language, "error.attempts_left", 0) == zero
    assert translate_n(language, "error.attempts_left", 10**6) == million


@pytest.mark.parametrize("locale", LOCALES)
def test_the_committed_mo_is_the_compiled_po(locale: str) -> None:
    compiled = io.BytesIO()
    write_mo(compiled, read_catalog(locale))
    compiled.seek(0)
    with (LOCALE / locale / "LC_MESSAGES" / "voice2fa.mo").open("rb") as f:
        committed = read_mo(f)
    fresh = read_mo(compiled)

    def messages(catalog: Catalog) -> dict[tuple[str | None, object], object]:
        def frozen(value: object) -> object:
            return tuple(value) if isinstance(value, (list, tuple)) else value

        return {(m.context, frozen(m.id)): frozen(m.string) for m in catalog if m.id}

    assert messages(committed) == messages(fresh), "run pybabel compile (voice2fa_middleware/locale/README.md)"
    assert committed.plural_forms == fresh.plural_forms


# -- plurals and durations ------------------------------------------------------------------------


def test_english_counts_read_right() -> None:
    assert translate("en", "error.attempts_left", n=1) == "1 attempt left."
    assert translate("en", "error.attempts_left", n=4) == "4 attempts left."
    assert translate_n("en", "error.attempts_left", 2) == "2 attempts left."
    assert translate("en", "page.resend_wait", seconds=1) == "You can ask for a new call in 1 second."
    assert translate("en", "page.resend_wait", seconds=30) == "You can ask for a new call in 30 seconds."
    assert translate("en", "page.remember", days=1) == "Remember this device for 1 day"
    assert translate("en", "page.code_hint", digits=6) == "6 digits, spoken twice"
    # The countdown's templates for the script: the placeholder stays, the form is chosen.
    assert translate("en", "page.resend_wait", seconds="{s}", count=1).endswith("in {s} second.")
    assert translate("en", "page.resend_wait", seconds="{s}").endswith("in {s} seconds.")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "in 1 second"),
        (0.2, "in 1 second"),
        (1, "in 1 second"),
        (30, "in 30 seconds"),
        (89.5, "in 90 seconds"),
        (90, "in 2 minutes"),
        (119, "in 2 minutes"),
        (3480, "in 58 minutes"),
        (3479.2, "in 58 minutes"),
        (5399, "in 90 minutes"),
        (5400, "in 2 hours"),
        (3 * 3600 + 1, "in 4 hours"),
        (float("inf"), "in 1 second"),
    ],
)
def test_durations_are_said_as_people_say_them(seconds: float, text: str) -> None:
    assert format_duration(seconds, "en") == text


@pytest.mark.parametrize(
    ("language", "one_minute", "two_hours", "one_left", "four_left"),
    [
        ("en", "in 1 minute", "in 2 hours", "1 attempt left.", "4 attempts left."),
        ("es", "dentro de 1 minuto", "dentro de 2 horas", "Queda 1 intento.", "Quedan 4 intentos."),
        ("fr", "dans 1 minute", "dans 2 heures", "Il vous reste 1 essai.", "Il vous reste 4 essais."),
        ("de", "in 1 Minute", "in 2 Stunden", "Noch 1 Versuch.", "Noch 4 Versuche."),
        ("pt", "em 1 minuto", "em 2 horas", "Resta 1 tentativa.", "Restam 4 tentativas."),
        ("it", "tra 1 minuto", "tra 2 ore", "Resta 1 tentativo.", "Restano 4 tentativi."),
        ("nl", "over 1 minuut", "over 2 uur", "Nog 1 poging over.", "Nog 4 pogingen over."),
        ("ja", "1分後に", "2時間後に", "あと1回入力できます。", "あと4回入力できます。"),
        ("zh", "1分钟后", "2小时后", "还剩1次机会。", "还剩4次机会。"),
        ("hi", "1 मिनट बाद", "2 घंटे बाद", "1 प्रयास शेष है।", "4 प्रयास शेष हैं।"),
    ],
)
def test_counts_and_durations_in_each_language(
    language: str, one_minute: str, two_hours: str, one_left: str, four_left: str
) -> None:
    assert format_duration(60, language) == translate_n(language, "duration.seconds", 60)
    assert format_duration(90, language) == translate_n(language, "duration.minutes", 2)
    assert format_duration(100 * 60 + 1, language) == two_hours
    assert DEFAULT_TRANSLATIONS.translate_n(language, "duration.minutes", 1) == one_minute
    assert translate(language, "error.attempts_left", n=1) == one_left
    assert translate(language, "error.attempts_left", n=4) == four_left
    locked = translate(language, "error.locked", duration=format_duration(58 * 60, language))
    assert "58" in locked and "{" not in locked


# -- choosing a language ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("pt-BR", "pt"),
        ("pt", "pt"),
        ("pt_BR", "pt"),
        ("pt-PT", "pt"),
        ("zh-CN", "zh"),
        ("zh-Hans", "zh"),
        ("zh-Hans-CN", "zh"),
        ("zh", "zh"),
        ("zh-TW", "en"),  # our Chinese is Simplified
        ("zh-Hant-HK", "en"),
        ("ja-JP", "ja"),
        ("hi-IN", "hi"),
        ("IT", "it"),
        ("nl-BE", "nl"),
        ("sv-SE", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_language_tags_map_to_our_languages(tag: str | None, expected: str) -> None:
    assert normalize_language(tag) == expected


def test_negotiation_takes_the_best_language_we_have() -> None:
    assert negotiate("zh-TW,zh-CN;q=0.8,en;q=0.5") == "zh"
    assert negotiate("zh-Hant,ja;q=0.5") == "ja"
    assert negotiate("sv,pt-BR;q=0.9") == "pt"
    assert negotiate("sv", default="hi-IN") == "hi"
    assert negotiate(None, default="nope") == "en"


# -- the call, in each language --------------------------------------------------------------------


@pytest.mark.parametrize("language", list(LANGUAGES))
@pytest.mark.parametrize("code", ["012345", "007012", "00000001"])
def test_the_call_reads_each_digit_back_zeros_included(language: str, code: str) -> None:
    laml = LamlBuilder(voice=None, app_name="Acme")
    call = SimulatedCall(sid="CA1", to="+1", from_="+2", url="/x", status_callback=None)
    next_url, pressed = _play(laml.answer(action="/code", language=language), call, ["1"])
    assert (next_url, pressed) == ("/code", "1")
    assert "Acme" in call.says[0] and call.code() is None  # no code before a key press
    document = laml.code(code=code, action="/repeat", language=language)
    _play(document, call, [])
    assert call.code(len(code)) == code
    if len(code) >= 6:
        assert call.code() == code
    spoken = spoken_digits(code, language)
    assert sum(spoken in text for text in call.says) == 2  # said twice
    assert re.fullmatch(r"[0-9](?:(?:, |、)[0-9])+", spoken)
    says = list(ET.fromstring(document).iter("Say"))
    assert {say.get("language") for say in says} == {SPEECH_LANGUAGES[language]}
    assert all(say.text and "{" not in say.text for say in says)


def test_the_say_codes_table() -> None:
    assert SPEECH_LANGUAGES == {
        "en": "en-US",
        "es": "es-ES",
        "fr": "fr-FR",
        "de": "de-DE",
        "pt": "pt-BR",
        "it": "it-IT",
        "nl": "nl-NL",
        "ja": "ja-JP",
        "zh": "zh-CN",
        "hi": "hi-IN",
    }
    assert spoken_digits("0102", "ja") == "0、1、0、2" and spoken_digits("0102", "hi") == "0, 1, 0, 2"


def test_the_old_messages_table_still_answers() -> None:
    assert list(MESSAGES) == list(LANGUAGES)
    assert MESSAGES["de"]["page.status.busy"].startswith("Die Leitung war besetzt")
    assert MESSAGES["en"]["page.title"] == "Verify it's you"


# -- an app's own catalogs -------------------------------------------------------------------------


def write_catalog(directory: Path, locale: str, entries: dict[str, str | tuple[str, ...]]) -> None:
    """An app's catalog, compiled as an app would (``pybabel compile`` or Babel's API)."""
    catalog = Catalog(locale=locale, domain="voice2fa", fuzzy=False)
    for key, text in entries.items():
        source = SOURCE[key]
        msgid = source.singular if source.plural is None else (source.singular, source.plural)
        catalog.add(msgid, text, context=key)
    folder = directory / locale / "LC_MESSAGES"
    folder.mkdir(parents=True)
    with (folder / "voice2fa.mo").open("wb") as f:
        write_mo(f, catalog)


SWEDISH = {
    "page.title": "Bekräfta att det är du",
    "say.code": "Din verifieringskod är: {digits}.",
    "error.attempts_left": ("{n} försök kvar.", "{n} försök kvar."),
    "duration.minutes": ("om {minutes} minut", "om {minutes} minuter"),
}


def test_an_app_adds_a_language_and_rewords_an_english_message(tmp_path: Path) -> None:
    write_catalog(tmp_path, "sv_SE", SWEDISH)
    write_catalog(tmp_path, "en", {"page.title": "Confirm it's you", "error.attempts_left": ("{n} try", "{n} tries")})
    translations = Translations([tmp_path])
    assert "sv" in translations.languages and translations.languages[: len(LANGUAGES)] == tuple(LANGUAGES)
    assert translations.translate("sv", "page.title") == "Bekräfta att det är du"
    assert translations.format_duration(60 * 5, "sv") == "om 5 minuter"
    assert translations.format_duration(60 * 2 - 30, "sv") == "om 2 minuter"
    assert translations.translate("sv", "page.submit") == "Verify"  # not translated: English
    assert translations.negotiate("sv-SE,de;q=0.5") == "sv" and translations.normalize_language("sv_FI") == "sv"
    assert translations.speech_language("sv") == "sv-SE"
    # Theirs first, ours under it.
    assert translations.translate("en", "page.title") == "Confirm it's you"
    assert translations.translate("en", "error.attempts_left", n=1) == "1 try"
    assert translations.translate("en", "page.submit") == "Verify"
    assert translations.translate("de", "page.title") == "Bestätigen Sie, dass Sie es sind"
    assert translations.messages("en")["page.title"] == "Confirm it's you"
    # The package's own texts are untouched.
    assert translate("en", "page.title") == "Verify it's you" and negotiate("sv") == "en"
    call = SimulatedCall(sid="CA1", to="+1", from_="+2", url="/x", status_callback=None)
    laml = LamlBuilder(voice=None, app_name="", translations=translations)
    _play(laml.code(code="0123456", action="/r", language="sv"), call, [])
    assert {say.get("language") for say in ET.fromstring(laml.goodbye(language="sv")).iter("Say")} == {"sv-SE"}
    assert call.says[0] == "Din verifieringskod är: 0, 1, 2, 3, 4, 5, 6." and call.code() == "0123456"


def test_the_first_directory_wins_and_a_say_code_can_be_given(tmp_path: Path) -> None:
    write_catalog(tmp_path / "a", "pt_BR", {"page.submit": "Confirmar"})
    write_catalog(tmp_path / "b", "pt", {"page.submit": "Validar", "page.cancel": "Voltar"})
    translations = Translations([tmp_path / "a", tmp_path / "b"], speech_languages={"pt": "pt-PT"})
    assert translations.translate("pt", "page.submit") == "Confirmar"
    assert translations.translate("pt", "page.cancel") == "Voltar"
    assert translations.translate("pt", "page.signout") == "Sair"
    assert translations.speech_language("pt") == "pt-PT" and translations.speech_language("ja") == "ja-JP"


def test_a_broken_placeholder_in_an_app_catalog_falls_back_to_english(tmp_path: Path) -> None:
    write_catalog(tmp_path, "en", {"error.locked": "Locked {duration", "say.code": "Code {unknown}: {digits}"})
    translations = Translations(tmp_path)
    assert translations.translate("en", "error.locked", duration="in 2 minutes") == (
        "Too many wrong codes. Try again in 2 minutes."
    )
    assert translations.translate("en", "say.code", digits="1, 2") == "Code {unknown}: 1, 2"


def test_bad_directories_and_files_fail_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        Translations([tmp_path / "missing"])
    folder = tmp_path / "sv" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "voice2fa.mo").write_bytes(b"not a catalog")
    with pytest.raises(ConfigurationError, match="cannot read"):
        Translations([tmp_path])


# -- end to end: a user of each language gets the call, and the page, in it ---------------------------


@pytest.mark.parametrize(
    ("header", "lang"), [("ja,en;q=0.5", "ja"), ("zh-Hans-CN", "zh"), ("hi-IN", "hi"), ("pt-BR", "pt")]
)
def test_a_user_is_called_and_served_in_their_language(harness: Harness, header: str, lang: str) -> None:
    with harness.client(headers={"accept-language": header}) as c:
        csrf, code = harness.challenge(c)
        assert spoken_digits(code, lang) in harness.double.calls[-1].says[1]
        bad = harness.verify(c, wrong_for(code), csrf)
        assert bad.status_code == 400 and f'<html lang="{lang}">' in bad.text
        assert translate(lang, "page.title") in bad.text
        assert translate(lang, "error.attempts_left", n=4) in bad.text
        assert harness.verify(c, code, csrf_of(bad.text)).status_code == 303


def test_the_middleware_takes_an_apps_catalogs(tmp_path: Path, harness_factory: Callable[..., Harness]) -> None:
    """``Voice2FAMiddleware(translations=dir)``: the page and the call in the app's language."""
    write_catalog(tmp_path, "sv_SE", SWEDISH)
    h = harness_factory(middleware={"translations": tmp_path})
    with h.client(headers={"accept-language": "sv-SE,sv;q=0.9"}) as c:
        page = c.get("/account", follow_redirects=True)
        assert '<html lang="sv">' in page.text and "Bekräfta att det är du" in page.text
        call = h.double.wait_for_calls(1)[0]
        assert call.code() is not None
        assert set(call.say_languages) == {"sv-SE"} and "Din verifieringskod är" in " ".join(call.says)
