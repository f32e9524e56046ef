"""``python -m hpstudy.bench``: the same as ``hpstudy bench``."""
import sys

from .throughput import main

sys.exit(main())
