"""Every Python block of README.md runs as written (in a fresh interpreter, in an empty folder,
with no VOICE2FA_*/SIGNALWIRE_* variables), so the README cannot drift from the code. (The
documentation site's samples, docs/src/, are run by test_docs.py.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_readme_has_its_python_blocks() -> None:
    assert len(BLOCKS) >= 1  # the quickstart; the rest of the documentation is under docs/


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{n + 1}" for n in range(len(BLOCKS))])
def test_readme_python_block_runs(block: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(block)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE2FA_", "SIGNALWIRE_"))}
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
