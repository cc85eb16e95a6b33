"""`python -m petriflow`: the petriflow command."""

import sys

from petriflow.cli import main

sys.exit(main())
