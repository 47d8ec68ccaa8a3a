"""`python -m edge.fuzz`: the long run (`edge.fuzz.run.main`)."""

import sys

from edge.fuzz.run import main

sys.exit(main())
