"""`pseudovad tune`: a Ray Tune search of training's hyper-parameters on validation videos.

`space` reads `tune.space`, `search` runs the search and writes its results, `trial` is what
one Ray worker runs (Ray imports it by module path, so it stays importable on its own).
"""
