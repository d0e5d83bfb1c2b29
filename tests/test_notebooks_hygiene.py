"""The committed notebooks stay small and comparable: no widget state, outputs only where nbval
compares them (``# NBVAL_CHECK_OUTPUT``), and at least one such cell with a stored output each."""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
MAX_BYTES = 200_000


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_the_lessons_are_there():
    names = [p.name for p in NOTEBOOKS]
    for prefix in ("01_", "02_", "03_", "04_", "05_", "06_", "07_", "08_"):
        assert any(n.startswith(prefix) for n in names), f"missing notebook {prefix}*.ipynb in {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_small_and_without_widget_state(path):
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes"
    nb = _load(path)
    assert "widgets" not in nb.get("metadata", {}), f"{path.name} stores widget state (metadata.widgets)"
    for cell in nb["cells"]:
        assert "widgets" not in cell.get("metadata", {})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_only_on_checked_cells(path):
    nb = _load(path)
    checked_with_output = 0
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = _src(cell)
        if "NBVAL_CHECK_OUTPUT" in src:
            assert cell["outputs"], f"{path.name} cell {k}: NBVAL_CHECK_OUTPUT cell without stored output"
            for out in cell["outputs"]:
                assert out["output_type"] == "stream" and out["name"] == "stdout", \
                    f"{path.name} cell {k}: checked cells print text only (got {out['output_type']})"
                text = "".join(out["text"])
                assert not re.search(r"0x[0-9a-f]{6,}", text), "memory address in a compared output"
            checked_with_output += 1
        else:
            assert not cell["outputs"], f"{path.name} cell {k} keeps outputs but is not NBVAL_CHECK_OUTPUT"
    assert checked_with_output >= 1, f"{path.name} has no NBVAL_CHECK_OUTPUT cell with stored output"


LESSONS = [p for p in NOTEBOOKS if p.name[:3] in ("01_", "02_", "03_", "04_", "05_", "06_", "07_", "08_")]


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_shape(path):
    """Opens with the paper sections it covers, ends with exercises, plots end with plt.show()."""
    nb = _load(path)
    first = _src(nb["cells"][0])
    assert nb["cells"][0]["cell_type"] == "markdown" and "Sec." in first and "Paper" in first
    last = _src(nb["cells"][-1])
    assert nb["cells"][-1]["cell_type"] == "markdown" and "Exercises" in last
    code = [_src(c) for c in nb["cells"] if c["cell_type"] == "code"]
    assert any("assert" in c for c in code)
    for c in code:
        if re.search(r"figures\.\w+\(|plt\.subplots|matrix_panels\(", c) and "explorer" not in c:
            assert "plt.show()" in c, f"{path.name}: plot cell without plt.show():\n{c[:200]}"
    assert not any("os.environ" in c for c in code), "read KFAC_TEACH_SMOKE via kfac_teach.config only"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_explorer_cells_show_their_explorer(path):
    """A cell that builds an explorer must show it: ending with ``name = …_explorer(…)`` displays
    nothing, and a reader sees no explorer (the browser test would fail on it much later)."""
    for k, cell in enumerate(_load(path)["cells"]):
        lines = [ln for ln in _src(cell).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if cell["cell_type"] == "code" and lines and "_explorer(" in _src(cell):
            assert not re.match(r"^\w+\s*=[^=]", lines[-1]), \
                f"{path.name} cell {k} ends with an assignment ({lines[-1]!r}): end it with the explorer's name"
