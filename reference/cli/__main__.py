"""`python -m reference.cli`: the same as the `mailspec` command."""

import sys

from reference.cli import main

sys.exit(main())
