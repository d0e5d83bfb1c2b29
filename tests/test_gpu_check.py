"""scripts/gpu_check.sh, the one prepared GPU check: its CPU dry run passes every step (about a minute)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_passes_every_step(tmp_path):
    env = dict(os.environ, PY=sys.executable)
    env.pop("KFAC_TEACH_SMOKE", None)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    steps = {s["step"]: s["exit"] for s in summary["steps"]}
    assert steps == {"device": 0, "cuda_tests": 0, "bench_fisher": 0, "train_curves": 0,
                     "train_mnist_sample": 0, "lesson07": 0}
    assert summary["dry_run"] is True
    device = json.loads((tmp_path / "device.json").read_text())
    assert device["device_type"] == "cpu" and device["device"]
    for name in ("fisher_cpu.json", "train_curves_cpu_smoke.json", "train_mnist_sample_cpu_smoke.json"):
        assert (tmp_path / name).is_file(), name
