"""The HTML edition (`make html`) in a real browser: headless Debian chromium driven by playwright,
offline. The landing page shows the verdict table with a row for every claim; a notebook page,
reached by its link, renders its figures. Screenshots of both go to docs/screenshots/ (committed).
`make test-browser` runs this (it builds the `cpu` edition into a temporary folder, about 40 s)."""
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "docs" / "screenshots"

pytestmark = [
    pytest.mark.skipif(not os.environ.get("REPLICATION_BROWSER_TEST"), reason="browser test: run `make test-browser`"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]  # the last three: no attempts to reach the network from a machine without one


def test_landing_page_and_a_notebook_page(tmp_path):
    from playwright.sync_api import sync_playwright

    from replication import claims, site

    index = site.build("cpu", tmp_path / "site")
    n_claims = len(claims.load_claims())
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(index.as_uri())
        rows = page.locator("table#verdicts tr.claim")
        assert rows.count() == n_claims
        assert page.locator("table#verdicts").is_visible() and page.locator("#profile-banner").is_visible()
        shown = page.locator("table#verdicts tr.claim td b").all_inner_texts()  # each row's verdict, as displayed
        assert len(shown) == n_claims and set(shown) <= set(claims.VERDICTS)
        page.screenshot(path=str(SHOTS / "site-cpu-index.png"))
        page.locator('a[href="06_robustness_curves.html"]').first.click()
        page.wait_for_load_state("load")
        assert page.url.endswith("06_robustness_curves.html")
        rendered = page.evaluate("Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length")
        assert rendered >= 2, "the notebook's figures did not render"
        page.locator("img").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "site-cpu-06_robustness_curves.png"))
        browser.close()
