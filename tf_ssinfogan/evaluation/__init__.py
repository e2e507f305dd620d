"""Evaluation of a trained generator. `report.evaluate` is the evaluation (any dataset and code kind) with its
JSON + Markdown report; `scorers` holds what is measured per code kind, `judges` the independent classifiers,
`inception` FID/KID/IS features, `factors` judge-free scores of synthetic data, `metrics` pure NumPy metrics,
`grids` fixed-latent image grids and `final` the end-of-run evaluation (eval.json)."""
