"""Run notebooks top to bottom and store outputs only on their ``# NBVAL_CHECK_OUTPUT`` cells.

    .venv/bin/python scripts/store_key_outputs.py notebooks/02_*.ipynb [--smoke] [--timeout 600]

Each notebook is executed at full size (``KFAC_TEACH_SMOKE`` unset; ``--smoke`` sets it) in a fresh
kernel with progress bars off.  Afterwards every code cell keeps its execution count, the key-numbers
cells (``# NBVAL_CHECK_OUTPUT``) keep their stdout, and every other output is dropped — the layout
``tests/test_notebooks_hygiene.py`` checks and ``nbval`` compares.  Prints the wall time of each run.
"""
import argparse
import os
import sys
import time

import nbformat
from nbclient import NotebookClient


def store(path, smoke=False, timeout=600):
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, KFAC_TEACH_PROGRESS="0")
    env.pop("KFAC_TEACH_SMOKE", None)
    if smoke:
        env["KFAC_TEACH_SMOKE"] = "1"
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)          # the kernel inherits this process's environment
    try:
        t = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}}).execute()
        seconds = time.perf_counter() - t
    finally:
        os.environ.clear()
        os.environ.update(old)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "NBVAL_CHECK_OUTPUT" in cell.source:
            cell.outputs = [o for o in cell.outputs if o.get("output_type") == "stream" and o.get("name") == "stdout"]
        else:
            cell.outputs = []
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("notebooks", nargs="+")
    ap.add_argument("--smoke", action="store_true", help="run with KFAC_TEACH_SMOKE=1")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = ap.parse_args(argv)
    for path in args.notebooks:
        print(f"{path}: {store(path, args.smoke, args.timeout):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
