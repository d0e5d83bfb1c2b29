"""Progress bars for the loops that can run for more than a few seconds.

:func:`progress` wraps ``tqdm.auto.tqdm``: an ipywidgets bar in Jupyter, a text bar on **stderr** in
plain Python (stdout stays clean for JSON and figure paths).  Bars are transient (``leave=False``)
and appear only once a loop has run for :data:`DELAY` seconds, so short loops print nothing.

Turn every bar off with ``KFAC_TEACH_PROGRESS=0`` (:func:`kfac_teach.config.progress_enabled`), or
one bar with ``disable=True`` (the library's functions take ``progress=False``).
"""
from __future__ import annotations

from tqdm.auto import tqdm

from . import config

#: Seconds a loop runs before its bar is drawn (tqdm's ``delay``).
DELAY = 1.0


def progress(iterable=None, total=None, desc=None, *, leave=False, disable=False, delay=DELAY, **kwargs):
    """A ``tqdm.auto`` bar over ``iterable`` (or a manual one of ``total`` steps: call ``.update``).

    ``disable=True`` or ``KFAC_TEACH_PROGRESS=0`` gives a silent bar that still iterates and
    accepts ``update``/``set_postfix``/``close``, so callers need no second code path.  Other
    keyword arguments go to tqdm (``unit``, ``postfix``, ...).
    """
    off = bool(disable) or not config.progress_enabled()
    return tqdm(iterable, total=total, desc=desc, leave=leave, disable=off, delay=delay, **kwargs)


def write(message):
    """Print ``message`` on stdout without breaking the bars that are open (``tqdm.write``)."""
    tqdm.write(str(message))


def finish(bar):
    """Mark a manual ``bar`` complete at its current count (call before it closes).

    A loop that stops early on purpose (a target error reached, a time budget spent) has not
    failed; tqdm's notebook bar would otherwise turn red and stay on screen instead of vanishing.
    """
    bar.total = bar.n
