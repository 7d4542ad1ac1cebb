"""Paper A (LIME-guided refinement): what belongs to that paper alone.

The package splits shared infrastructure from each paper's method so that a reader of the file list
sees which is which: top-level modules (data, models, train, attacks, evaluate, explain, segments,
shortcuts, zoo, results, notebook, papers, report, ...) serve both papers and every notebook;
`paper_a/` holds Paper A's spurious-feature rules (`spurious`), its refinement loss and Algorithm 1
(`refine`), and the study that fine-tunes, attacks and records each row of notebook 04 (`study`).
Paper B's diffusion purifier will get `paper_b/` the same way.
"""
