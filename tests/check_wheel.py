"""Checks a built wheel holds what the package needs at run time, and nothing else.

Usage: python tests/check_wheel.py dist/*.whl   (run by ``nox -s package``)
"""

from __future__ import annotations

import sys
import zipfile

REQUIRED = {
    "voice2fa_middleware/__init__.py",
    "voice2fa_middleware/py.typed",
    "voice2fa_middleware/testing.py",
    "voice2fa_middleware/pytest_plugin.py",
    "voice2fa_middleware/templates/voice2fa/base.html",
    "voice2fa_middleware/templates/voice2fa/verify.html",
    "voice2fa_middleware/templates/voice2fa/message.html",
    "voice2fa_middleware/templates/voice2fa/devphone.html",
    "voice2fa_middleware/templates/voice2fa/phone.html",
    "voice2fa_middleware/templates/voice2fa/signout.html",
    "voice2fa_middleware/static/voice2fa.css",
    "voice2fa_middleware/static/voice2fa.js",
    "voice2fa_middleware/static/devphone.js",
    "voice2fa_middleware/locale/voice2fa.pot",
}
# The compiled catalog of each language (gettext reads them at run time; the .po stay out).
LOCALES = ("en", "es", "fr", "de", "pt_BR", "it", "nl", "ja", "zh_CN", "hi")
REQUIRED |= {f"voice2fa_middleware/locale/{locale}/LC_MESSAGES/voice2fa.mo" for locale in LOCALES}


def main(path: str) -> int:
    names = set(zipfile.ZipFile(path).namelist())
    problems = [f"missing: {name}" for name in sorted(REQUIRED - names)]
    for name in sorted(names):
        top = name.split("/")[0]
        if top not in ("voice2fa_middleware",) and not top.endswith(".dist-info"):
            problems.append(f"does not belong in the wheel: {name}")
        elif name.endswith(".po"):
            problems.append(f"a catalog source, not needed at run time: {name}")
    metadata = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
    if metadata is None or "voice2fa_middleware.pytest_plugin" not in zipfile.ZipFile(path).read(metadata).decode():
        problems.append("the pytest11 entry point is missing")
    if not any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names):
        problems.append("the LICENSE file is missing")
    for problem in problems:
        print(problem)
    print(f"{path}: {len(names)} files, {'ok' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
