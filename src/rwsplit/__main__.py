"""``python -m rwsplit`` is the ``rwsplit`` command."""

import sys

from .cli import main

sys.exit(main())
