"""Paper replications of explainability-guided adversarial robustness (Paper A: LIME-guided
refinement; Paper B: ALDE, diffusion purification).

Layout, so that the file list says what is shared and what belongs to one paper: modules at this
level are infrastructure every notebook uses (data, models, zoo, train, checkpoints, attacks,
evaluate, segments, explain, shortcuts, papers, results, notebook, profiles, tables, figures,
report, runner, bench, hardware). A paper's own method lives in its subpackage: `paper_a`
(spurious-feature rules, refinement, Algorithm 1, the notebooks' study and audit); `paper_b` will
hold the diffusion purifier. A subpackage may import the shared modules, never the other way round.
"""
