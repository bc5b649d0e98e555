"""``python -m voice2fa_middleware check``: see ``_check``."""

import sys

from ._check import main

sys.exit(main())
