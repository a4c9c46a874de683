"""``python -m study.cli``: the ``freqstudy`` command without the console script."""

import sys

from study.cli import main

sys.exit(main())
