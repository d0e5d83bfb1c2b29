"""The built wheel holds the whole package (bench/, experiments/, ...) and runs without the checkout.

The wheel is built from a copy of ``pyproject.toml``, ``README.md`` and ``kfac_teach/`` in a temporary
folder (so no ``build/`` or ``*.egg-info`` lands in the working tree), with the ``setuptools`` of this
environment and no network (``--no-build-isolation --no-deps --no-index``).
"""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "kfac_teach"


def _package_sources():
    """Every ``.py`` of the package, as wheel paths (``kfac_teach/...``)."""
    return {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(PACKAGE, src / "kfac_teach", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "--no-index", "-q", "-w", str(tmp / "dist")],
                         cwd=tmp, capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (whl,) = (tmp / "dist").glob("kfac_teach-*.whl")
    return whl


def test_wheel_holds_every_module(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    missing = sorted(_package_sources() - names)
    assert not missing, f"{wheel.name} lacks {missing}"
    for sub in ("bench", "experiments"):
        assert f"kfac_teach/{sub}/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "notebooks/"))]


def test_installed_wheel_runs_the_bench_cli(wheel, tmp_path):
    """Install the wheel into an empty folder and run from outside the checkout, with only that folder
    on ``PYTHONPATH``: the editable install of this environment is a ``sys.meta_path`` finder appended
    after the path finder, so the wheel's copy is the one found; asserted through ``__file__``."""
    site = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                          "--target", str(site), str(wheel)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _env(PYTHONPATH=str(site), KFAC_TEACH_PROGRESS="0")
    code = ("import kfac_teach, kfac_teach.bench.__main__ as B, kfac_teach.experiments as E, "
            "kfac_teach.experiments.fisher_speed as S\n"
            "for m in (kfac_teach, B, E, S, E.runs):\n    print(m.__file__)\n"
            "print(E.PROBLEMS['mnist'].sizes == S.MNIST_AE_SIZES)")
    out = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    *files, same = out.stdout.split("\n")[:-1]
    assert same == "True"
    for f in files:
        assert Path(f).resolve().is_relative_to(site.resolve()), (f, site)
    help_ = subprocess.run([sys.executable, "-m", "kfac_teach.bench", "--help"], cwd=work,
                           capture_output=True, text=True, timeout=120, env=env)
    assert help_.returncode == 0 and help_.stdout.startswith("usage: python -m kfac_teach.bench"), help_
    train = subprocess.run([sys.executable, "-m", "kfac_teach.bench", "train", "--help"], cwd=work,
                           capture_output=True, text=True, timeout=120, env=env)
    assert train.returncode == 0 and "--problem" in train.stdout, train.stderr[-2000:]
