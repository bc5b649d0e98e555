from pathlib import Path

from voice2fa_middleware import Translations

catalogs = Path("my_translations")  # e.g. my_translations/sv_SE/LC_MESSAGES/voice2fa.mo
catalogs.mkdir(exist_ok=True)
translations = Translations(catalogs, speech_languages={"sv": "sv-SE"})
# app.add_middleware(Voice2FAMiddleware, identify=..., translations=translations)
# (or translations="my_translations": a directory, or a list of them, the first one wins)
print(translations.translate("en", "error.attempts_left", n=1))  # 1 attempt left.
