"""python -m segment_cli: the domain commands of `segment` (the bot adds its own)."""

import sys

from segment_cli.main import main

sys.exit(main())
