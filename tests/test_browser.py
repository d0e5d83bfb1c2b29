"""The user's path in a real browser: JupyterLab started as ``make lab`` starts it, each notebook with
an explorer run top to bottom in headless Chromium, and every explorer's slider moved by keyboard and
by mouse.

nbval proves that the cells run; only a browser shows that the widgets render and redraw (a missing
``jupyterlab_widgets``, a callback that ignores its slider or an exception inside a callback are
invisible to nbval).  For each notebook the test asserts that

* every code cell ran (an execution count, no ``[*]``) and none wrote a traceback or a warning
  (stderr);
* each explorer rendered its picture (an ``<img>``) and its table of numbers;
* moving its last slider by keyboard (focus + ArrowRight) and then by mouse (dragging the handle)
  changes the picture each time, without an error in the explorer's output;
* the browser console shows no error (a widget-manager error such as "Class ... not found" only
  shows there).

Screenshots go to ``artifacts/browser/`` (ignored by git).  The server serves a temporary copy of
``notebooks/`` (JupyterLab autosaves into the notebooks it runs), on a free loopback port, with a
token; kernels and server are shut down through the REST API at the end.

Needs a Chromium (Debian: ``apt-get install chromium``; or ``KFAC_TEACH_BROWSER=/path/to/chrome``)
and the ``playwright`` Python package (only its driver: never ``playwright install``).  Without a
browser the test is skipped, unless the environment variable ``CI`` is set: then it fails.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
CELL_TIMEOUT_S = 300          # one notebook, all cells, in smoke mode (about 10-40 s here)
REDRAW_TIMEOUT_S = 120        # one slider move (notebook 07 retrains for a few iterations)
SERVER_TIMEOUT_S = 120
TOKEN = "kfac-teach-browser-test"
# JupyterLab settings for the test server (a temporary settings folder, not the user's): every cell
# attached to the DOM (the default windowing detaches cells out of view), no news toast over the page
SETTINGS = {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                            "checkForUpdates": False}}


def notebooks_with_explorers():
    """Every notebook that builds an explorer (a ``…_explorer(`` call), whatever else it says."""
    return sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb") if "_explorer(" in p.read_text())


def _missing(what):
    """Fail under CI (the browser test must run there), skip elsewhere, saying what to do."""
    msg = (f"browser test needs {what}. Debian/Ubuntu: `apt-get install chromium` (or set "
           "KFAC_TEACH_BROWSER to a Chrome/Chromium binary) and `pip install playwright` "
           "(never `playwright install`: the test drives the system browser)")
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(msg + "  [CI is set, so this is a failure, not a skip]")
    pytest.skip(msg)


def find_browser():
    explicit = os.environ.get("KFAC_TEACH_BROWSER")
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            pytest.fail(f"KFAC_TEACH_BROWSER={explicit!r} is not an executable file")
        return explicit
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base, path, method="GET"):
    req = urllib.request.Request(f"{base}{path}", method=method,
                                 headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``make lab`` on a temporary copy of notebooks/ (exactly the README's run command, plus the
    folder, a port and a token); yields the base URL; shuts kernels and server down afterwards."""
    if shutil.which("make") is None:
        _missing("`make` (the README's run command is `make lab`)")
    venv = Path(sys.prefix)
    if not (venv / ".kfac_teach-installed").exists():
        pytest.skip(f"{venv} was not set up by `make setup`; run the browser test through `make test`")
    nb_dir = tmp_path_factory.mktemp("notebooks")
    for p in (ROOT / "notebooks").iterdir():
        if p.is_file():
            shutil.copy(p, nb_dir / p.name)
    lab_dir = tmp_path_factory.mktemp("lab")
    settings = lab_dir / "settings"
    for plugin, values in SETTINGS.items():
        (settings / plugin).parent.mkdir(parents=True, exist_ok=True)
        (settings / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(lab_dir / "lab.log", "w+")
    args = (f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} "
            f"--ServerApp.port_retries=0 --IdentityProvider.token={TOKEN} "
            f"--LabApp.user_settings_dir={settings} --LabApp.workspaces_dir={lab_dir / 'workspaces'}")
    proc = subprocess.Popen(["make", "-s", "-C", str(ROOT), "lab", f"VENV={venv}",
                             f"NOTEBOOKS={nb_dir}", f"LAB_ARGS={args}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_TIMEOUT_S
        while True:
            try:
                api(base, "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"`make lab` did not serve {base} (exit {proc.poll()}):\n{log.read()[-3000:]}")
                time.sleep(0.5)
        yield base
    finally:
        try:
            for s in api(base, "/api/sessions"):
                api(base, f"/api/sessions/{s['id']}", "DELETE")
            assert api(base, "/api/kernels") == [], "kernels still running after shutdown"
            api(base, "/api/shutdown", "POST")
            proc.wait(timeout=30)
        except Exception:                                # noqa: BLE001 -- never leave a server behind
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser():
    path = find_browser()
    if path is None:
        _missing("a Chromium/Chrome binary (none of " + ", ".join(BROWSERS) + " on PATH)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the `playwright` Python package")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


# ---------------------------------------------------------------------------------------------
# JupyterLab, driven like a reader would
# ---------------------------------------------------------------------------------------------

def run_all_cells(page):
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def prompts(page):
    return page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()


def wait_until_all_cells_ran(page, n_code_cells):
    deadline = time.monotonic() + CELL_TIMEOUT_S
    while time.monotonic() < deadline:
        texts = [t.strip() for t in prompts(page)]
        done = [t for t in texts if t.startswith("[") and t[1:-2].isdigit()]
        if len(texts) == n_code_cells and len(done) == n_code_cells:
            return
        if error_outputs(page):              # JupyterLab stops "Run All" at the first error
            pytest.fail(f"a cell failed: {error_outputs(page)}")
        page.wait_for_timeout(500)
    pytest.fail(f"cells did not finish in {CELL_TIMEOUT_S} s; prompts: {prompts(page)}")


def error_outputs(page):
    """Tracebacks and anything else on stderr (warnings included) anywhere in the notebook,
    explorers' outputs included: JupyterLab renders both with the stderr MIME type."""
    return page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
                        ).all_inner_texts()


def picture(explorer):
    img = explorer.locator(".kfac-explorer-picture img")
    return img.first.get_attribute("src") if img.count() else None


def kernel_idle(page):
    return page.get_by_text(re.compile(r"\| Idle$")).count() > 0


def wait_for_new_picture(page, explorer, old, how):
    """Wait until the picture differs from ``old`` and the kernel has been idle for 1 s (a drag
    sends several values; the last redraw is the one to compare); returns the settled picture."""
    deadline = time.monotonic() + REDRAW_TIMEOUT_S
    idle_since = None
    while time.monotonic() < deadline:
        new = picture(explorer)
        if kernel_idle(page):
            idle_since = idle_since or time.monotonic()
            if new and new != old and time.monotonic() - idle_since > 1.0:
                return new
        else:
            idle_since = None
        page.wait_for_timeout(250)
    pytest.fail(f"moving the slider by {how} did not change the explorer's picture "
                f"in {REDRAW_TIMEOUT_S} s; errors: {error_outputs(page)}")


def move_by_keyboard(page, handle):
    handle.focus()
    page.keyboard.press("ArrowRight")


def move_by_mouse(page, handle):
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 60, y, steps=8)
    page.mouse.up()


@pytest.mark.parametrize("name", notebooks_with_explorers())
def test_notebook_runs_and_its_explorers_redraw_in_jupyterlab(browser, lab, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = Path(name).stem
    n_code = sum(c["cell_type"] == "code"
                 for c in json.loads((ROOT / "notebooks" / name).read_text())["cells"])
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    console = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(f"page error: {e}"))
    try:
        page.goto(f"{lab}/lab/workspaces/{stem}/tree/{name}?reset&token={TOKEN}", timeout=60_000)
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=60_000)   # kernel ready
        run_all_cells(page)
        wait_until_all_cells_ran(page, n_code)
        page.screenshot(path=str(ARTIFACTS / f"{stem}_ran.png"), full_page=False)
        assert not error_outputs(page), f"{name}: cells produced errors: {error_outputs(page)}"

        explorers = page.locator(".kfac-explorer")
        assert explorers.count() >= 1, f"{name}: no explorer rendered (is jupyterlab_widgets installed?)"
        for k in range(explorers.count()):
            ex = explorers.nth(k)
            ex.scroll_into_view_if_needed()
            ex.locator(".kfac-explorer-picture img").first.wait_for(timeout=REDRAW_TIMEOUT_S * 1000)
            assert ex.locator(".kfac-explorer-numbers td").count() >= 2, "no numbers beside the picture"
            handle = ex.locator(".noUi-handle").last
            before = picture(ex)
            move_by_keyboard(page, handle)
            after_key = wait_for_new_picture(page, ex, before, "keyboard")
            ex.screenshot(path=str(ARTIFACTS / f"{stem}_explorer{k}_keyboard.png"))
            move_by_mouse(page, handle)
            wait_for_new_picture(page, ex, after_key, "mouse")
            ex.screenshot(path=str(ARTIFACTS / f"{stem}_explorer{k}_mouse.png"))
        assert not error_outputs(page), f"{name}: an explorer callback failed: {error_outputs(page)}"
        assert not console, f"{name}: browser console errors: {console}"
    finally:
        page.screenshot(path=str(ARTIFACTS / f"{stem}_end.png"))
        context.close()


# ---------------------------------------------------------------------------------------------
# the skip/fail rule itself (no browser needed)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("1", pytest.fail.Exception),
                                         ("false", pytest.skip.Exception), (None, pytest.skip.Exception)])
def test_a_missing_browser_fails_under_ci_and_skips_elsewhere(monkeypatch, ci, outcome):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="apt-get install chromium"):
        _missing("a browser")


def test_find_browser_takes_KFAC_TEACH_BROWSER_then_PATH(monkeypatch, tmp_path):
    exe = tmp_path / "chromium"
    exe.write_text("#!/bin/sh\n")
    monkeypatch.setenv("KFAC_TEACH_BROWSER", str(exe))
    with pytest.raises(pytest.fail.Exception, match="not an executable"):
        find_browser()
    exe.chmod(0o755)
    assert find_browser() == str(exe)
    monkeypatch.delenv("KFAC_TEACH_BROWSER")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_browser() == str(exe)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_browser() is None
