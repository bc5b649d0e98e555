"""The LaML documents the call plays.

1. ``answer``: "press any key to hear your code" inside a ``<Gather>``, so an answering
   machine never records the code (skipped when the voicemail guard is off), and "if you did
   not try to sign in, press 9": the person who did not ask for the call ends it there, and
   it is reported (``reported``: no code, a word of advice, hang up).
2. ``code``: the digits one by one, twice, then "press 1 to hear it again" (a ``<Gather>``
   back to the same action), goodbye, hang up.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .._i18n.catalogs import DEFAULT_TRANSLATIONS, Translations, spoken_digits


class LamlBuilder:
    def __init__(self, *, voice: str | None, app_name: str, translations: Translations | None = None) -> None:
        self.voice = voice
        self.app_name = app_name
        self.translations = translations or DEFAULT_TRANSLATIONS

    def _say(self, parent: ET.Element, text: str, language: str) -> None:
        attrs = {"language": self.translations.speech_language(language)}
        if self.voice:
            attrs["voice"] = self.voice
        ET.SubElement(parent, "Say", attrs).text = text

    @staticmethod
    def _gather(parent: ET.Element, action: str, timeout: int) -> ET.Element:
        return ET.SubElement(
            parent,
            "Gather",
            {"action": action, "method": "POST", "numDigits": "1", "timeout": str(timeout)},
        )

    @staticmethod
    def _render(root: ET.Element) -> str:
        return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")

    def answer(self, *, action: str, language: str) -> str:
        """Ask for a key press before anything secret is said."""
        root = ET.Element("Response")
        translate = self.translations.translate
        app = translate(language, "say.app", name=self.app_name) if self.app_name else ""
        gather = self._gather(root, action, timeout=10)
        # One <Say>: the intro and "if you did not try to sign in, press 9" are one prompt.
        prompt = translate(language, "say.intro", app=app) + " " + translate(language, "say.not_me")
        self._say(gather, prompt, language)
        self._say(root, translate(language, "say.no_key"), language)
        ET.SubElement(root, "Hangup")
        return self._render(root)

    def code(self, *, code: str, action: str, language: str) -> str:
        """Speak the code twice, offer a repeat, say goodbye, hang up."""
        root = ET.Element("Response")
        translate = self.translations.translate
        digits = spoken_digits(code, language)
        self._say(root, translate(language, "say.code", digits=digits), language)
        ET.SubElement(root, "Pause", {"length": "1"})
        self._say(root, translate(language, "say.again", digits=digits), language)
        gather = self._gather(root, action, timeout=5)
        self._say(gather, translate(language, "say.repeat"), language)
        self._say(root, translate(language, "say.goodbye"), language)
        ET.SubElement(root, "Hangup")
        return self._render(root)

    def goodbye(self, *, language: str, expired: bool = False) -> str:
        root = ET.Element("Response")
        text = self.translations.translate(language, "say.expired" if expired else "say.goodbye")
        self._say(root, text, language)
        ET.SubElement(root, "Hangup")
        return self._render(root)

    def reported(self, *, language: str) -> str:
        """After 9 ("I did not try to sign in"): no code; what was done and what to do; hang up."""
        root = ET.Element("Response")
        self._say(root, self.translations.translate(language, "say.reported"), language)
        ET.SubElement(root, "Hangup")
        return self._render(root)

    def hangup(self) -> str:
        """Nothing said: the call was answered by a machine."""
        root = ET.Element("Response")
        ET.SubElement(root, "Hangup")
        return self._render(root)

    def check_phrase(self) -> str:
        """The check command's test call: a fixed phrase, no code, then hang up."""
        root = ET.Element("Response")
        name = f" for {self.app_name}" if self.app_name else ""
        self._say(root, f"This is a test call{name} from voice two factor. Your setup works. Goodbye.", "en")
        ET.SubElement(root, "Hangup")
        return self._render(root)
