"""The executed notebooks as a reader sees them: JupyterLab 4 in headless Chromium (Debian's
chromium driven by playwright; offline, no browser download). `make test-browser` runs this.

For each executed notebook: open it with a fresh workspace (`?reset`), scroll its notebook pane
(the page itself does not scroll), and assert that its figures render and that no stderr or error
output is shown. Screenshots go to docs/screenshots/ (committed; listed in the README).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "docs" / "screenshots"
PROFILE = os.environ.get("REPLICATION_BROWSER_PROFILE", "smoke")

pytestmark = [
    pytest.mark.skipif(not os.environ.get("REPLICATION_BROWSER_TEST"), reason="browser test: run `make test-browser`"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]


def _executed_dir() -> Path:
    from replication.paths import executed_dir

    return executed_dir(PROFILE)


@pytest.fixture(scope="module")
def executed():
    """The executed notebooks of PROFILE; smoke ones are made now if missing (about 4 min)."""
    from replication import runner

    nbs = runner.notebooks(None)
    missing = [nb.stem[:2] for nb in nbs if not (_executed_dir() / nb.name).exists()]
    if missing and PROFILE == "smoke":
        runner.run("smoke", missing, {})
    return [_executed_dir() / nb.name for nb in nbs]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a free localhost port, no token, the news prompt switched off."""
    tmp = tmp_path_factory.mktemp("lab")
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "ws")}
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
                             "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={ROOT}",
                             "--ServerApp.disable_check_xsrf=True", *(["--allow-root"] if os.geteuid() == 0 else [])], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "lab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        if proc.poll() is not None:
            break
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"JupyterLab did not start: {(tmp / 'lab.log').read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def read_along(browser, url: str, rel: str, shots_prefix: str, max_shots: int = 4) -> dict:
    """Open `rel` in JupyterLab, scroll its notebook pane to the end; what rendered, and screenshots."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/lab/tree/{rel}?reset", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_timeout(1500)
    scroller = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer"
    seen = {"images": 0, "broken_images": 0, "stderr": [], "errors": []}
    shot = 0
    for _ in range(200):
        page.wait_for_timeout(300)
        state = page.evaluate("""(sel) => {
            const imgs = [...document.querySelectorAll('.jp-Notebook .jp-RenderedImage img')];
            const err = [...document.querySelectorAll('.jp-Notebook [data-mime-type="application/vnd.jupyter.stderr"]')];
            const exc = [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"], .jp-Notebook .jp-mod-error')];
            const el = document.querySelector(sel);
            return {ok: imgs.filter(i => i.complete && i.naturalWidth > 0).map(i => i.src.slice(-40)),
                    broken: imgs.filter(i => i.complete && i.naturalWidth === 0).length,
                    stderr: err.map(e => e.innerText.slice(0, 200)), errors: exc.map(e => e.innerText.slice(0, 200)),
                    top: el.scrollTop, height: el.clientHeight, total: el.scrollHeight};
        }""", scroller)
        seen["images"] = max(seen["images"], len(state["ok"]))
        seen["broken_images"] = max(seen["broken_images"], state["broken"])
        seen["stderr"] += [s for s in state["stderr"] if s not in seen["stderr"]]
        seen["errors"] += [s for s in state["errors"] if s not in seen["errors"]]
        if shot < max_shots:
            page.screenshot(path=str(SHOTS / f"{shots_prefix}-{shot + 1}.png"))
            shot += 1
        if state["top"] + state["height"] >= state["total"] - 2:
            break
        page.evaluate("(sel) => { const el = document.querySelector(sel); el.scrollTop += el.clientHeight * 0.9; }", scroller)
    page.close()
    return seen


def test_every_executed_notebook_reads_cleanly(executed, lab, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems = []
    for nb in executed:
        figures = sum("image/png" in o.get("data", {}) for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", []))
        seen = read_along(browser, lab, str(nb.relative_to(ROOT)), f"{PROFILE}-{nb.stem}")
        if seen["stderr"] or seen["errors"] or seen["broken_images"] or seen["images"] < min(figures, 1):
            problems.append((nb.name, {**seen, "figures stored": figures}))
    assert not problems, problems
