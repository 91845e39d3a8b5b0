"""Stage functions: one module per stage, each with `run(cfg, ...)` taking explicit paths.

The CLI (`pseudovad <stage>`), `dvc.yaml` and the Kubeflow components all call these, so a laptop
`dvc repro` and a cluster run execute the same code. A stage only wires: it resolves paths, calls
one library function, writes its outputs and summary (docs/architecture.md).
"""
