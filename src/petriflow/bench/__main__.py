"""`python -m petriflow.bench`."""

import sys

from petriflow.bench import main

sys.exit(main())
