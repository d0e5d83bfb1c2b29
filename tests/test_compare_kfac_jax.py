"""scripts/compare_kfac_jax.py: the driver, our worker and the JSON, at a tiny size (seconds).

kfac-jax lives in a venv of its own (never a dependency); its side runs here only when
``$JAX_PYTHON`` names an interpreter that has it.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "compare_kfac_jax.py"


def _run(tmp_path, methods, *extra):
    out = tmp_path / "cmp.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--seeds", "0", "1", "--methods", methods,
                           "--max-steps", "4", "--sgd-steps", "3", "--warmup", "2", "--out", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_our_side_writes_steps_times_and_a_table(tmp_path):
    result, stdout = _run(tmp_path, "ours_kfac_block_diagonal,ours_sgd")
    assert result["device"] and "cores" in result["device"]
    assert result["problem"]["sizes"] == [64, 32, 16, 32, 64] and result["versions"]["torch"]
    runs = {(r["method"], r["seed"]) for r in result["runs"]}
    assert runs == {(m, s) for m in ("ours_kfac_block_diagonal", "ours_sgd") for s in (0, 1)}
    for r in result["runs"]:
        steps = 4 if r["method"].startswith("ours_kfac") else 3
        assert r["steps_run"] == steps and r["step_s_median"] > 0
        assert r["final_loss"] < 45.0  # from about 44 (sparse init) in a few steps
        assert r["to"]["16"]["steps"] is None  # not in 4 steps
        assert r["repeat_loss_spread"] == 0.0  # the timed repeats retrace the same iterates
    assert result["summary"]["ours_kfac_block_diagonal"]["reached_16"] == "0/2"
    assert "ours_kfac_block_diagonal" in stdout and "ms/step" in stdout


def test_unknown_method_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--methods", "ours_adam"], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode != 0 and "unknown methods" in proc.stderr


@pytest.mark.skipif(not os.environ.get("JAX_PYTHON"), reason="set JAX_PYTHON to a venv with kfac-jax 0.0.8")
def test_kfac_jax_side_runs_the_same_problem(tmp_path):
    result, _ = _run(tmp_path, "ours_sgd,jax_sgd", "--jax-python", os.environ["JAX_PYTHON"])
    by = {(r["method"], r["seed"]): r for r in result["runs"]}
    # the same data, init and SGD on both sides: the loss curves agree to float32 rounding
    for s in (0, 1):
        ours, theirs = by["ours_sgd", s]["loss_every_10"], by["jax_sgd", s]["loss_every_10"]
        assert ours == pytest.approx(theirs, rel=1e-4)
    assert result["versions"]["kfac-jax"] == "0.0.8"
