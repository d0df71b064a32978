"""`python -m ssljax.cli`, the same as the `ssljax` command."""

import sys

from ssljax.cli.main import main

sys.exit(main())
