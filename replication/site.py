"""A static HTML edition of one profile's record, built offline: `make html` (or
`python -m replication.site --profile cpu`) writes site/<profile>/ (git-ignored).

- index.html: the verdict table of every claim first (replication.claims), each row linking to the
  notebook that holds its evidence; then the notebooks in the papers' order (Paper A: 01-07, Paper
  B: 08-10) and the full report.
- one page per executed notebook (results/executed/<profile>/, nbconvert's HTML exporter, figures
  inline as data URIs), each with the same navigation bar (landing page, previous, next).
- report.html: results/<profile>/REPORT.md (replication.report) as HTML.

A smoke edition says so on every page. nbconvert rather than jupyter-book 2: it is already installed
with papermill and nbval and works offline, while jupyter-book 2 (MyST) needs Node.js and npm
packages this project's machines cannot fetch; the edition is a landing page plus converted
notebooks, which is all nbconvert has to do. Open site/<profile>/index.html in a browser.
"""
from __future__ import annotations

import argparse
import html
import re
from pathlib import Path

from . import claims, paths
from .cache import atomic_write_text

PAPERS = {"A": "Paper A (LIME-guided refinement)", "B": "Paper B (ALDE)"}
SECTIONS = [("Setup", ("00",)), (PAPERS["A"], ("01", "02", "03", "04", "05", "06", "07")),
            (PAPERS["B"], ("08", "09", "10")), ("Beyond the papers", ("11",))]
STYLE = """
body.replication-site-page { margin: 0; }
.rs-nav { position: sticky; top: 0; z-index: 1000; background: #263238; color: #eceff1; padding: 6px 16px;
          font: 14px/1.6 system-ui, sans-serif; }
.rs-nav a { color: #80cbc4; margin-right: 16px; text-decoration: none; }
.rs-banner { background: #ffecb3; color: #5d4037; padding: 8px 16px; font: 600 14px system-ui, sans-serif; }
.rs-main { max-width: 1200px; margin: 0 auto; padding: 8px 24px 48px; font: 15px/1.5 system-ui, sans-serif; }
table.rs-verdicts { border-collapse: collapse; font-size: 13px; }
table.rs-verdicts th, table.rs-verdicts td { border: 1px solid #cfd8dc; padding: 3px 6px; vertical-align: top; }
table.rs-verdicts td.num { text-align: right; white-space: nowrap; }
.v-reproduced { background: #c8e6c9; } .v-direction-only { background: #fff9c4; }
.v-not-reproduced { background: #ffe0b2; } .v-contradicted { background: #ffcdd2; }
.v-not-testable-here, .v-no-record { background: #eceff1; }
"""


def _banner(profile: str) -> str:
    from .report import SCALE

    cls = "rs-banner"
    return f'<div class="{cls}" id="profile-banner">{html.escape(SCALE.get(profile, profile))}</div>'


def _nav(pages: list[tuple[str, str]], i: int | None) -> str:
    """The bar on every page: the landing page, the report, previous and next notebook."""
    links = ['<a href="index.html">Verdicts and contents</a>', '<a href="report.html">Full report</a>']
    if i is not None:
        if i > 0:
            links.append(f'<a href="{pages[i - 1][0]}" rel="prev">&larr; {html.escape(pages[i - 1][1])}</a>')
        if i + 1 < len(pages):
            links.append(f'<a href="{pages[i + 1][0]}" rel="next">{html.escape(pages[i + 1][1])} &rarr;</a>')
    return '<nav class="rs-nav">' + "".join(links) + "</nav>"


def _wrap(title: str, body: str, profile: str, nav: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body class=\"replication-site-page\">{nav}{_banner(profile)}"
            f"<main class=\"rs-main\">{body}</main></body></html>\n")


def _inject(page: str, profile: str, nav: str) -> str:
    """nbconvert's page with the site's style, navigation bar and profile banner at the top."""
    # offline: no scripts from a CDN (require.js, MathJax); TeX in Markdown cells then shows as typed
    page = re.sub(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', "", page)
    page = page.replace("</head>", f"<style>{STYLE}</style></head>", 1)
    return re.sub(r"<body([^>]*)>", lambda m: f"<body{m.group(1)}>{nav}{_banner(profile)}", page, count=1)


def _cell(v, share: bool) -> str:
    if v is None or v != v:
        return "–"
    return f"{100 * v:.1f}" if share else f"{v:.3f}"


def verdict_table(vs: list[claims.Verdict], pages: dict[str, str]) -> str:
    rows = ["<table class=\"rs-verdicts\" id=\"verdicts\"><thead><tr><th>claim</th><th>paper, where</th><th>paper</th>"
            "<th>ours</th><th>95% interval</th><th>&Delta;</th><th>verdict</th><th>evidence</th></tr></thead><tbody>"]
    for v in vs:
        c, e = v.claim, v.ours
        share = c.rule.get("unit", "share") == "share"
        ci = "–" if e is None else f"[{_cell(e.low, share)}, {_cell(e.high, share)}]"
        nb = c.evidence.get("notebook")
        link = f'<a href="{pages[nb]}">{nb[:2]}</a>' if nb in pages else (nb or "–")
        why = f'<br><small>{html.escape(v.reason)}</small>' if v.ours is None and v.reason else ""
        rows.append(f'<tr class="claim v-{v.verdict.replace(" ", "-")}" data-claim="{html.escape(c.id)}">'
                    f"<td>{html.escape(c.claim)}<br><small>{html.escape(c.id)}</small></td>"
                    f"<td>{c.paper}: {html.escape(c.where)}</td><td class=\"num\">{_cell(c.paper_value, share)}</td>"
                    f"<td class=\"num\">{_cell(None if e is None else e.value, share)}</td><td class=\"num\">{ci}</td>"
                    f"<td class=\"num\">{_cell(v.delta, share)}</td><td><b>{v.verdict}</b>{why}</td><td>{link}</td></tr>")
    return "".join(rows) + "</tbody></table>"


def build(profile: str, out: Path | None = None) -> Path:
    """Write the edition under `out` (default site/<profile>/); the landing page's path."""
    from nbconvert import HTMLExporter
    from nbconvert.filters.markdown import markdown2html

    from .report import report, verdict_counts

    out = Path(out or paths.PROJECT_ROOT / "site" / profile)
    out.mkdir(parents=True, exist_ok=True)
    executed = sorted(paths.executed_dir(profile).glob("[0-9][0-9]_*.ipynb"))
    if not executed:
        raise FileNotFoundError(f"no executed notebooks in {paths.executed_dir(profile)}: run "
                                f"`python -m replication.runner --profile {profile}` first")
    pages = [(f"{nb.stem}.html", nb.stem[:2] + " · " + nb.stem[3:].replace("_", " ")) for nb in executed]
    exporter = HTMLExporter(template_name="lab")
    for i, nb in enumerate(executed):
        body, _ = exporter.from_filename(str(nb))
        atomic_write_text(out / pages[i][0], _inject(body, profile, _nav(pages, i)))
    md = report(profile)
    atomic_write_text(out / "report.html", _wrap(f"Replication report ({profile})", markdown2html(md), profile, _nav(pages, None)))
    vs = claims.verdicts(claims.profile_records(profile), strict=profile != "smoke")
    by_stem = {nb.stem: pages[i][0] for i, nb in enumerate(executed)}
    contents = []
    for title, numbers in SECTIONS:
        items = [f'<li><a href="{p}">{html.escape(t)}</a></li>' for p, t in pages if t[:2] in numbers]
        if items:
            contents.append(f"<h3>{html.escape(title)}</h3><ul>{''.join(items)}</ul>")
    body = (f"<h1>Explainability-guided robustness: a replication ({profile})</h1>"
            f"<h2>Verdicts: {len(vs)} claims of the two papers</h2><p>{html.escape(verdict_counts(vs))}. Paper values "
            "are the papers' own (shares in %), ours are what the code measured; rules and intervals: "
            "<code>replication/claims.py</code>.</p>" + verdict_table(vs, by_stem)
            + "<h2>The notebooks, in the papers' order</h2>" + "".join(contents)
            + '<p><a href="report.html">The full report</a>: every table beside the papers\' numbers.</p>')
    index = out / "index.html"
    atomic_write_text(index, _wrap(f"Replication ({profile})", body, profile, _nav(pages, None)))
    return index


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--out", default=None, help="folder to write (default: site/<profile>/)")
    args = ap.parse_args(argv)
    index = build(args.profile, args.out)
    print(f"open {index}")


if __name__ == "__main__":
    main()
