"""`python -m petriflow.cli`."""

import sys

from petriflow.cli import main

sys.exit(main())
