"""`python -m vizprobe.cli`: the same as the `vizprobe` command."""

import sys

from vizprobe.cli import main

sys.exit(main())
