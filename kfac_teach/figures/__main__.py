"""``python -m kfac_teach.figures [name ...]``: regenerate the figures (all, or the names given)."""
import sys

import matplotlib

matplotlib.use("Agg")

from . import main  # noqa: E402

main(names=sys.argv[1:] or None)
