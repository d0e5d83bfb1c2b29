"""Package-wide switches, read in one place.

* ``KFAC_TEACH_SMOKE=1`` shrinks notebook and figure sizes for CI; the full sizes are the default.
* ``KFAC_TEACH_PROGRESS=0`` turns off every progress bar (:mod:`kfac_teach.progress`); they are on
  by default.  Read at each call of :func:`progress_enabled`, so a notebook can set
  ``os.environ["KFAC_TEACH_PROGRESS"] = "0"`` after importing the package.
"""
import os

_OFF = ("0", "false", "no", "off")

SMOKE = os.environ.get("KFAC_TEACH_SMOKE", "").strip() not in ("", "0", "false", "False")


def smoke_or(full, small):
    """``small`` under ``KFAC_TEACH_SMOKE=1``, else ``full``."""
    return small if SMOKE else full


def progress_enabled():
    """``False`` when ``KFAC_TEACH_PROGRESS`` is ``0``, ``false``, ``no`` or ``off`` (any case)."""
    return os.environ.get("KFAC_TEACH_PROGRESS", "").strip().lower() not in _OFF
