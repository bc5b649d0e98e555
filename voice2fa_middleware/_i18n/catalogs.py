"""What the page shows and the call says, in ten languages, from gettext catalogs.

The English texts live in ``_messages.py``; the translations in
``locale/<locale>/LC_MESSAGES/voice2fa.po``, compiled to the ``.mo`` files read here with the
standard library's ``gettext`` (see ``locale/README.md`` for the commands). Each message is
found by its key (``"page.title"``), which is its ``msgctxt`` in the catalogs.

An app adds a language or rewords any message with a directory of its own catalogs,
``<dir>/<language>/LC_MESSAGES/voice2fa.mo``, read before ours::

    Translations(["app/voice2fa_locale"]).translate("sv", "page.title")
"""

from __future__ import annotations

import gettext
import logging
import math
import string
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import NamedTuple

from .._errors import ConfigurationError
from .messages import MESSAGES as _SOURCE

logger = logging.getLogger("voice2fa")

DOMAIN = "voice2fa"


class Language(NamedTuple):
    locale: str  # the catalog's directory under locale/
    say: str  # the LaML <Say language="..."> code


# Our languages, and the <Say> code of each. SignalWire's cXML <Say> reference lists these
# codes for its standard voices (man, woman); Polly.* and gcloud.* voices take their own.
LANGUAGES: dict[str, Language] = {
    "en": Language("en", "en-US"),  # English, United States voice
    "es": Language("es", "es-ES"),  # Spanish, Spain voice (the texts use "usted", Spain's words)
    "fr": Language("fr", "fr-FR"),  # French, France voice
    "de": Language("de", "de-DE"),  # German, Germany voice
    "pt": Language("pt_BR", "pt-BR"),  # Portuguese, Brazil voice (Brazilian texts)
    "it": Language("it", "it-IT"),  # Italian, Italy voice
    "nl": Language("nl", "nl-NL"),  # Dutch, Netherlands voice
    "ja": Language("ja", "ja-JP"),  # Japanese voice
    # Mandarin, Simplified Chinese texts. SignalWire's standard voices take zh-CN; its
    # gcloud.cmn-CN-* voices (and Twilio's Polly/Google ones) name the same language cmn-CN.
    "zh": Language("zh_CN", "zh-CN"),
    # Hindi, India. Not every provider has a standard Hindi voice: set voice to one that
    # speaks hi-IN (Polly.Aditi, Polly.Kajal-Neural, gcloud.hi-IN-Standard-A) if calls are silent.
    "hi": Language("hi", "hi-IN"),
}

SPEECH_LANGUAGES: dict[str, str] = {code: language.say for code, language in LANGUAGES.items()}

# What a TTS voice pauses on between two digits read one at a time.
_DIGIT_SEPARATORS = {"ja": "、", "zh": "、"}

# A plural message's count is its one placeholder ("{n}", "{seconds}"...).
_COUNTS: dict[str, str] = {
    m.key: next(name for _, name, _, _ in string.Formatter().parse(m.plural) if name)
    for m in _SOURCE.values()
    if m.plural is not None
}
_OTHER = 10  # the count for a plural message given none: its plural ("other") form


class _KeepMissing(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _code_of(name: str) -> str | None:
    """The language code of a catalog directory name: ``pt_BR`` -> ``pt``."""
    primary = name.replace("-", "_").split("_")[0].lower()
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else None


def _package_catalog(language: str) -> gettext.GNUTranslations | None:
    known = LANGUAGES.get(language)
    if known is None:
        return None
    path = resources.files("voice2fa_middleware") / "locale" / known.locale / "LC_MESSAGES" / f"{DOMAIN}.mo"
    with path.open("rb") as fp:
        return gettext.GNUTranslations(fp)


class Translations:
    """The texts of the pages and the call: an app's catalogs first, ours as the fallback.

    ``extra_dirs``: directories holding ``<language>/LC_MESSAGES/voice2fa.mo`` (the language
    as ``sv``, ``pt_BR`` or ``pt-BR``: the part before ``_``/``-`` is the code); the first
    directory wins. ``speech_languages`` gives the ``<Say>`` code of a language (``{"sv":
    "sv-SE"}``); without it, an added language's is its catalog's ``Language`` (``sv_SE``).
    """

    def __init__(
        self,
        extra_dirs: str | PathLike[str] | Iterable[str | PathLike[str]] = (),
        *,
        speech_languages: Mapping[str, str] | None = None,
    ) -> None:
        dirs = [extra_dirs] if isinstance(extra_dirs, (str, PathLike)) else list(extra_dirs)
        self.extra_dirs = tuple(Path(d) for d in dirs)
        self._extra: dict[str, list[Path]] = {}
        for directory in self.extra_dirs:
            if not directory.is_dir():
                raise ConfigurationError(f"voice2fa: the translations directory {directory} does not exist")
            for mo in sorted(directory.glob(f"*/LC_MESSAGES/{DOMAIN}.mo")):
                code = _code_of(mo.parent.parent.name)
                if code is not None:
                    self._extra.setdefault(code, []).append(mo)
        self.languages: tuple[str, ...] = (*LANGUAGES, *sorted(set(self._extra) - set(LANGUAGES)))
        self._speech = dict(speech_languages or {})
        self._catalogs: dict[str, gettext.NullTranslations] = {}
        self._negotiated: dict[tuple[str, str], str] = {}
        for code in self._extra:
            self.catalog(code)  # a broken file fails at start-up, not on a user's request

    def __repr__(self) -> str:
        return f"Translations({[str(d) for d in self.extra_dirs]!r})"

    # -- catalogs ---------------------------------------------------------------------------------

    def catalog(self, language: str) -> gettext.NullTranslations:
        """The catalog chain of ``language`` (English for a language we do not have)."""
        if language not in self.languages:
            language = "en"
        found = self._catalogs.get(language)
        if found is None:
            found = self._catalogs[language] = self._load(language)
        return found

    def _load(self, language: str) -> gettext.NullTranslations:
        chain: list[gettext.NullTranslations] = []
        for path in self._extra.get(language, ()):
            try:
                with path.open("rb") as fp:
                    chain.append(gettext.GNUTranslations(fp))
            except Exception as exc:
                raise ConfigurationError(f"voice2fa: cannot read the catalog {path}: {exc}") from exc
        ours = _package_catalog(language)
        if ours is not None:
            chain.append(ours)
        if not chain:
            return gettext.NullTranslations()  # the English texts themselves
        for more in chain[1:]:
            chain[0].add_fallback(more)
        return chain[0]

    # -- texts ------------------------------------------------------------------------------------

    def gettext(self, language: str, key: str) -> str:
        """The text of ``key``, unformatted (a plural message's form for many)."""
        return self.ngettext(language, key, _OTHER)

    def ngettext(self, language: str, key: str, n: int) -> str:
        """The text of ``key`` for a count of ``n``, unformatted."""
        source = _SOURCE.get(key)
        if source is None:
            return key
        if source.plural is None:
            return self.catalog(language).pgettext(key, source.singular)
        return self.catalog(language).npgettext(key, source.singular, source.plural, n)

    def translate(self, language: str, key: str, /, **values: object) -> str:
        """The text of ``key`` with its placeholders filled in.

        A plural message picks its form from its count placeholder (``n=3``), or from
        ``count=`` when that placeholder holds no number (``seconds="{s}", count=1``).
        """
        count = _COUNTS.get(key)
        if count is None:
            return self._format(language, key, self.gettext(language, key), values)
        given = values.get("count", values.get(count))
        n = given if isinstance(given, int) and not isinstance(given, bool) else _OTHER
        return self._format(language, key, self.ngettext(language, key, n), values)

    def translate_n(self, language: str, key: str, n: int, /, **values: object) -> str:
        """The text of plural message ``key`` for ``n``, its count placeholder set to ``n``."""
        count = _COUNTS.get(key)
        filled: dict[str, object] = {count: n} if count else {}
        return self._format(language, key, self.ngettext(language, key, n), {**filled, **values})

    def _format(self, language: str, key: str, text: str, values: Mapping[str, object]) -> str:
        if not values:
            return text
        try:
            return text.format_map(_KeepMissing(values))
        except (ValueError, LookupError, AttributeError, TypeError):
            logger.warning("voice2fa: the %s text of %s has broken placeholders: %r", language, key, text)
            source = _SOURCE.get(key)
            return text if source is None else source.singular.format_map(_KeepMissing(values))

    def format_duration(self, seconds: float, language: str) -> str:
        """A wait as people say it: "in 30 seconds", "in 58 minutes", "in 2 hours" (rounded up)."""
        seconds = seconds if math.isfinite(seconds) and seconds > 1 else 1
        if seconds < 90:
            return self.translate_n(language, "duration.seconds", math.ceil(seconds))
        if seconds < 90 * 60:
            return self.translate_n(language, "duration.minutes", math.ceil(seconds / 60))
        return self.translate_n(language, "duration.hours", math.ceil(seconds / 3600))

    def messages(self, language: str) -> dict[str, str]:
        """Every key's text in ``language``, unformatted."""
        return {key: self.gettext(language, key) for key in _SOURCE}

    def speech_language(self, language: str) -> str:
        """The ``<Say language>`` code of ``language``."""
        found = self._speech.get(language) or SPEECH_LANGUAGES.get(language)
        return found or self.catalog(language).info().get("language", "").replace("_", "-") or "en-US"

    # -- choosing a language ------------------------------------------------------------------------

    def _match(self, tag: str) -> str | None:
        parts = tag.strip().replace("_", "-").lower().split("-")
        if parts[0] not in self.languages:
            return None
        if parts[0] == "zh" and {"hant", "tw", "hk", "mo"} & set(parts[1:]):
            return None  # our Chinese is Simplified: a Traditional reader gets their next choice
        return parts[0]

    def normalize_language(self, tag: str | None, default: str = "en") -> str:
        """A language we have for ``tag`` (``"pt-BR"`` -> ``"pt"``), else ``default``."""
        return (self._match(tag) if tag else None) or self._match(default) or "en"

    def negotiate(self, accept_language: str | None, default: str = "en") -> str:
        """The best language we have of an ``Accept-Language`` header; never fails."""
        # Browsers send a few distinct headers: each is read once (bounded, as clients choose).
        key = ((accept_language or "")[:512], default)
        found = self._negotiated.get(key)
        if found is None:
            if len(self._negotiated) >= 1024:
                self._negotiated.clear()
            found = self._negotiated[key] = self._negotiate(key[0], default)
        return found

    def _negotiate(self, accept_language: str, default: str) -> str:
        ranked: list[tuple[float, int, str]] = []
        for index, part in enumerate(accept_language.split(",")):
            pieces = part.strip().split(";")
            quality = 1.0
            for param in pieces[1:]:
                name, _, value = param.strip().partition("=")
                if name.strip() == "q":
                    try:
                        quality = float(value)
                    except ValueError:
                        quality = 0.0
            if pieces[0] and quality > 0:
                ranked.append((-quality, index, pieces[0]))
        for _q, _i, tag in sorted(ranked):
            found = self._match(tag)
            if found:
                return found
        return self.normalize_language(default)


def spoken_digits(code: str, language: str) -> str:
    """``"012"`` -> ``"0, 1, 2"`` (``"0、1、2"`` in Japanese and Chinese): one ASCII digit at
    a time, with a pause between, so every voice reads digits, zeros included, not a number."""
    return _DIGIT_SEPARATORS.get(language, ", ").join(code)


# The package's own texts, for callers given no Translations.
DEFAULT_TRANSLATIONS = Translations()


def translate(language: str, key: str, **values: object) -> str:
    return DEFAULT_TRANSLATIONS.translate(language, key, **values)


def translate_n(language: str, key: str, n: int, **values: object) -> str:
    return DEFAULT_TRANSLATIONS.translate_n(language, key, n, **values)


def format_duration(seconds: float, language: str) -> str:
    return DEFAULT_TRANSLATIONS.format_duration(seconds, language)


def normalize_language(tag: str | None, default: str = "en") -> str:
    return DEFAULT_TRANSLATIONS.normalize_language(tag, default)


def negotiate(accept_language: str | None, default: str = "en") -> str:
    return DEFAULT_TRANSLATIONS.negotiate(accept_language, default)


def languages() -> Iterable[str]:
    return DEFAULT_TRANSLATIONS.languages


class _Tables(Mapping[str, Mapping[str, str]]):
    """``MESSAGES[language][key]``: the package's texts, as the dict it replaces gave them."""

    def __getitem__(self, language: str) -> Mapping[str, str]:
        if language not in DEFAULT_TRANSLATIONS.languages:
            raise KeyError(language)
        return DEFAULT_TRANSLATIONS.messages(language)

    def __iter__(self) -> Iterator[str]:
        return iter(DEFAULT_TRANSLATIONS.languages)

    def __len__(self) -> int:
        return len(DEFAULT_TRANSLATIONS.languages)


MESSAGES: Mapping[str, Mapping[str, str]] = _Tables()
