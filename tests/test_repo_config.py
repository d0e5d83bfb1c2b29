"""The repository's own configuration agrees with what the README promises.

* the GitHub workflow runs on push and pull requests, on Python 3.10-3.12, with the CPU build of
  torch, and runs exactly the README's test command;
* ``.ci/run`` runs exactly that command too;
* every relative link and image in the README points at a file that exists, and every notebook is
  listed in it;
* ``pyproject.toml`` admits every Python version of the matrix (and its classifiers name exactly them);
* the README's first Python example runs (the others compile).
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

try:  # Python 3.11+
    import tomllib  # novermin (guarded: 3.10 falls back below)
except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
CI_RUN = ROOT / ".ci" / "run"
PYTHONS = ["3.10", "3.11", "3.12"]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
EXAMPLE_TIMEOUT_S = 120  # the first example takes about 4 s on a 2-core CPU


# ----------------------------------------------------------------------------- README parsing

def fenced_blocks(text, lang):
    """Contents of the ```lang fenced blocks of a Markdown text, in order."""
    return re.findall(rf"^```{lang}[ \t]*\n(.*?)^```", text, flags=re.M | re.S)


def readme_test_command(text):
    """The test command of the README's two-commands block: its ``make test`` line, comment removed."""
    for block in fenced_blocks(text, "bash"):
        lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
        lines = [line for line in lines if line]
        if any(line.startswith("make lab") for line in lines):
            tests = [line for line in lines if line.startswith("make test")]
            assert len(tests) == 1, f"the two-commands block needs exactly one `make test` line: {block!r}"
            return tests[0]
    raise AssertionError("README.md has no ```bash block with `make lab` and `make test`")


def markdown_targets(text):
    """Targets of Markdown links/images and HTML src/href attributes, outside fenced code blocks."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", "code", text)  # inline code: `[x](y)` there is not a link
    targets = re.findall(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    targets += re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", text)
    targets += re.findall(r"^\s*\[[^\]]+\]:\s*(\S+)", text, flags=re.M)  # reference definitions
    return targets


def relative_targets(text):
    out = []
    for t in markdown_targets(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", t, flags=re.I) or t.startswith(("#", "//")):
            continue  # URL (https:, mailto:, ...) or in-page anchor
        out.append(t.split("#", 1)[0].split("?", 1)[0])
    return [t for t in out if t]


@pytest.fixture(scope="module")
def readme():
    return README.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- the workflow

def test_workflow_triggers(workflow):
    # PyYAML (YAML 1.1) reads the bare key `on` as the boolean True
    on = workflow.get("on", workflow.get(True))
    assert on is not None, "the workflow has no `on:` triggers"
    events = [on] if isinstance(on, str) else list(on)
    assert {"push", "pull_request"} <= set(events), f"triggers {events}: need push and pull_request"


def test_workflow_python_matrix(workflow):
    jobs = workflow["jobs"]
    assert jobs, "the workflow has no jobs"
    for name, job in jobs.items():
        versions = job.get("strategy", {}).get("matrix", {}).get("python-version")
        # unquoted 3.10 is the float 3.1 in YAML: require the strings
        assert versions == PYTHONS, f"job {name!r}: python-version matrix {versions!r}, want {PYTHONS}"
        assert str(job.get("runs-on", "")).startswith("ubuntu"), f"job {name!r} runs on {job.get('runs-on')}"
        uses = [step.get("uses", "") for step in job["steps"]]
        assert any(u.startswith("actions/checkout@") for u in uses), f"job {name!r} has no checkout step"
        setup = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
        assert setup and setup[0].get("with", {}).get("python-version") == "${{ matrix.python-version }}", \
            f"job {name!r}: actions/setup-python must install ${{{{ matrix.python-version }}}}"


def test_workflow_runs_the_readme_test_command(workflow, readme):
    command = readme_test_command(readme)
    for name, job in workflow["jobs"].items():
        runs = [s["run"].strip() for s in job["steps"] if "run" in s]
        assert command in runs, f"job {name!r} runs {runs}, not the README's test command {command!r}"


def test_workflow_installs_cpu_torch(workflow):
    for name, job in workflow["jobs"].items():
        env = {**workflow.get("env", {}), **job.get("env", {})}
        for step in job["steps"]:
            if "run" in step:
                env.update(step.get("env", {}))
        index = str(env.get("TORCH_INDEX", ""))
        assert shlex.split(index) == ["--index-url", CPU_INDEX], \
            f"job {name!r}: TORCH_INDEX={index!r}, want '--index-url {CPU_INDEX}' (the Makefile reads it)"


def test_workflow_uploads_artifacts(workflow):
    for name, job in workflow["jobs"].items():
        up = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
        assert up, f"job {name!r} does not upload artifacts/"
        assert up[0].get("if") == "always()", f"job {name!r}: upload artifacts/ with `if: always()`"
        assert str(up[0].get("with", {}).get("path", "")).rstrip("/") == "artifacts"


# ----------------------------------------------------------------------------- .ci/run

def test_ci_run_calls_exactly_the_readme_test_command(readme):
    command = readme_test_command(readme)
    lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")
                and not line.startswith(("set ", "cd "))]
    # setup before it (the browser for tests/test_browser.py) is allowed; the tests themselves run
    # only through the README's command, which comes last
    assert commands and commands[-1] == command and commands.count(command) == 1, \
        f".ci/run runs {commands}, the README's test command is {command!r}"
    others = [c for c in commands[:-1] if re.search(r"\b(pytest|make|nbval)\b", c)]
    assert not others, f".ci/run runs tests outside the README's command: {others}"


# ----------------------------------------------------------------------------- README links

def test_readme_relative_links_exist(readme):
    targets = relative_targets(readme)
    assert any(t.endswith(".png") for t in targets), "the README shows no figure"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_lists_every_notebook(readme):
    notebooks = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "no notebooks found"
    linked = set(relative_targets(readme))
    missing = [nb for nb in notebooks if nb not in linked]
    assert not missing, f"README.md does not link these notebooks: {missing}"


def test_link_parser_sees_links_and_images():
    text = ('![fig](figures/a.png) [nb](notebooks/x.ipynb#top) [web](https://example.org) [in](#cite)\n'
            '<img src="figures/b.png"> `[not](a/link.md)`\n```python\n[c](code.md)\n```\n')
    assert relative_targets(text) == ["figures/a.png", "notebooks/x.ipynb", "figures/b.png"]


# ----------------------------------------------------------------------------- pyproject

def test_pyproject_python_versions_match_the_matrix():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    spec = SpecifierSet(project.get("requires-python", ""))
    rejected = [v for v in PYTHONS if v not in spec]
    assert not rejected, f"requires-python {str(spec)!r} rejects {rejected}, which CI tests"
    classified = sorted((c.rsplit("::", 1)[1].strip() for c in project.get("classifiers", [])
                         if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)),
                        key=lambda v: tuple(map(int, v.split("."))))
    assert not classified or classified == PYTHONS, \
        f"classifiers name Python {classified}, the CI matrix tests {PYTHONS}"


# ----------------------------------------------------------------------------- README examples

def test_readme_python_examples_compile(readme):
    blocks = fenced_blocks(readme, "python")
    assert blocks, "the README has no Python example"
    for k, block in enumerate(blocks):
        compile(block, f"README.md python block {k}", "exec")


def test_readme_first_example_runs(readme, tmp_path):
    """The ten-line example (about 4 s here): run it in a fresh interpreter."""
    block = fenced_blocks(readme, "python")[0]
    code = [line for line in block.splitlines() if line.strip()]
    assert len(code) <= 10, f"the README's library example has {len(code)} lines of code; it promises ten"
    r = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                       timeout=EXAMPLE_TIMEOUT_S)
    assert r.returncode == 0, f"README example failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
