"""Package-wide switches, read in one place.

``KFAC_TEACH_SMOKE=1`` shrinks notebook and figure sizes for CI; the full sizes are the default.
"""
import os

SMOKE = os.environ.get("KFAC_TEACH_SMOKE", "").strip() not in ("", "0", "false", "False")


def smoke_or(full, small):
    """``small`` under ``KFAC_TEACH_SMOKE=1``, else ``full``."""
    return small if SMOKE else full
