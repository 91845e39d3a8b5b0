"""Kubeflow Pipelines v2 pipelines built from `components/`, and the `pseudovad-kfp` CLI."""
