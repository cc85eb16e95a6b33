"""`python -m petriflow.chaos`."""

import sys

from petriflow.chaos import main

sys.exit(main())
