"""``python -m lococourse.cli``: the same command line as ``lococourse``."""
import sys

from lococourse.cli.main import main

sys.exit(main())
