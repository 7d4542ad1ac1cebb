"""The HTML edition (make html), built offline from executed notebooks and the records: the landing
page's verdict table has a row per claim, every page carries the navigation and the profile banner,
figures are inline and nothing is fetched from the network."""
import re
import shutil

from replication import claims, paths, site


def test_the_edition_links_every_page_and_shows_every_claim(tmp_path, monkeypatch):
    executed = tmp_path / "executed"
    executed.mkdir()
    for stem in ("01_baseline_training", "05_lipschitz_bound"):  # two small committed cpu copies
        shutil.copy(paths.executed_dir("cpu") / f"{stem}.ipynb", executed)
    monkeypatch.setattr(paths, "executed_dir", lambda profile: executed)
    index = site.build("cpu", tmp_path / "site")
    page = index.read_text()
    rows = re.findall(r'<tr class="claim v-([a-z-]+)" data-claim="([^"]+)"', page)
    assert [r[1] for r in rows] == [c.id for c in claims.load_claims()]  # one row per claim, in the file's order
    assert {r[0].replace("-", " ") for r in rows} <= set(claims.VERDICTS)
    assert 'href="01_baseline_training.html"' in page and 'href="05_lipschitz_bound.html"' in page
    for name in ("01_baseline_training.html", "05_lipschitz_bound.html", "report.html", "index.html"):
        html = (tmp_path / "site" / name).read_text()
        assert 'class="rs-nav"' in html and 'id="profile-banner"' in html and "cpu profile" in html
        assert not re.search(r'<script[^>]*src="https?://', html), name  # offline
    nb = (tmp_path / "site" / "01_baseline_training.html").read_text()
    assert nb.count("data:image/png;base64,") >= 1 and 'href="05_lipschitz_bound.html" rel="next"' in nb
    assert "<h1" in (tmp_path / "site" / "report.html").read_text()


def test_a_smoke_edition_says_so(tmp_path, monkeypatch):
    executed = tmp_path / "executed"
    executed.mkdir()
    shutil.copy(paths.executed_dir("cpu") / "01_baseline_training.ipynb", executed)
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)  # no smoke results at all: every claim "no record"
    monkeypatch.setattr(paths, "executed_dir", lambda profile: executed)
    index = site.build("smoke", tmp_path / "site")
    for page in (index, tmp_path / "site" / "01_baseline_training.html", tmp_path / "site" / "report.html"):
        assert "SMOKE PROFILE" in page.read_text()
