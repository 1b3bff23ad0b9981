"""``python -m scipion_deepalign.cli``."""
import sys

from . import main

sys.exit(main())
