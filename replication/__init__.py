"""Paper replications of explainability-guided adversarial robustness (Paper A: LIME-guided
refinement; Paper B: ALDE, diffusion purification).

Layout, so that the file list says what is shared and what belongs to one paper: modules at this
level are infrastructure every notebook uses (data, models, zoo, train, checkpoints, attacks,
evaluate, segments, explain, lime_sampling, shortcuts, papers, results, notebook, profiles, tables, figures,
report, runner, bench, hardware). A paper's own method lives in its subpackage: `paper_a`
(spurious-feature rules, refinement, Algorithm 1, the notebooks' study and audit); `paper_b` holds
ALDE (the diffusion purifier, its attacks, Table 1's defences, attribution stability). A subpackage
may import the shared modules, never the other way round; `report` and `verify`, which read both
papers' records, are the exception. tests/test_package_layout.py holds the rule and the absence of
import circles.
"""
