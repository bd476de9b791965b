"""`python -m bridge` is the `toloka-bridge` command."""

import sys

from bridge.cli import main

sys.exit(main())
