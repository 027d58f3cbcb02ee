"""``python -m seglab.cli``: the ``seglab`` command."""

import sys

from seglab.cli import main

sys.exit(main())
