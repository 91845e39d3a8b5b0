"""KFP component: `evaluate` — model + frame store → AUCs (Metrics), ROC (ClassificationMetrics),
the evaluation folder (metrics.json, scores.csv, roc.csv, plots/) and a Markdown report."""
from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    metrics: Output[Metrics],
    roc: Output[ClassificationMetrics],
    evaluation: Output[Artifact],
    report: Output[Markdown],
    params: str = "",
    overrides: list = [],
    mlflow_uri: str = "",
    videos: list = [],
    roc_points: int = 200,
    store: Input[Dataset] = None,
    store_dir: str = "",
):
    """Evaluate `model` on the test split of `store` (or of the store at `store_dir`).

    `roc_points` thins the curve shown in the KFP UI; the full curve stays in evaluation/roc.csv.
    """
    import csv
    import math
    import os
    from pathlib import Path

    import yaml

    from pseudovad import config
    from pseudovad.stages import evaluate as stage

    typed = {"tracking": {"uri": mlflow_uri}} if mlflow_uri else {}
    if mlflow_uri:
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri   # also for MLflow calls made without the config
    cfg = config.load(None, [str(o) for o in overrides],
                      extra=config.deep_merge(yaml.safe_load(params) or {}, typed))
    result = stage.run(cfg, model=model.path, store=store_dir or store.path, out=evaluation.path,
                       videos=[str(v) for v in videos] or None)

    for k in ("auc_micro", "auc_macro", "auc_raw", "eer"):
        if result.get(k) is not None:
            metrics.log_metric(k, float(result[k]))
    metrics.log_metric("frames", result["frames"])
    metrics.log_metric("anomalous_frames", result["anomalous_frames"])
    evaluation.metadata.update({"fingerprint": result["fingerprint"], "auc_micro": result["auc_micro"]})

    with open(Path(evaluation.path, "roc.csv")) as f:
        rows = [(float(r["fpr"]), float(r["tpr"]), float(r["threshold"])) for r in csv.DictReader(f)]
    step = max(1, math.ceil(len(rows) / max(roc_points, 2)))
    keep = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
    # sklearn's first point has threshold +inf (nothing flagged), which JSON cannot hold: the
    # next float above the highest score flags nothing either
    top = math.nextafter(max((r[2] for r in rows if math.isfinite(r[2])), default=1.0), math.inf)
    roc.log_roc_curve([r[0] for r in keep], [r[1] for r in keep],
                      [r[2] if math.isfinite(r[2]) else top for r in keep])

    lines = [f"## evaluate: {result.get('method', '')} on {result.get('dataset', '')}", "",
             "| metric | value |", "|---|---|"]
    for k in ("auc_micro", "auc_macro", "auc_raw", "eer", "frames", "anomalous_frames", "videos"):
        v = result.get(k)
        lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    lines += ["", "| video | AUC |", "|---|---|"]
    lines += [f"| {v} | {'n/a' if a is None else f'{a:.4f}'} |" for v, a in result.get("video_auc", {}).items()]
    Path(report.path).write_text("\n".join(lines) + "\n")
