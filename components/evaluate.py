"""KFP component: `evaluate` — model + frame store → AUCs and the label-free check's numbers
(Metrics), ROC (ClassificationMetrics), the evaluation folder (metrics.json, provenance.json,
scores.csv, roc.csv, plots/) and a Markdown report."""
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
    # the typed parameters (pseudovad.kubeflow.TYPED): unset unless the user set them
    method: str = "",
    pseudo_kind: str = "",
    lam: float = -1.0,
    p: float = -1.0,
    sigma: float = -1.0,
    jumps: list = [],
    patch_max_size: float = -1.0,
    patch_max_move: int = -1,
    patch_source: str = "",
    pseudo_loss: str = "",
    mask_ratio: float = -1.0,
    epochs: int = -1,
    init: str = "",
    tune_samples: int = -1,
    tune_gpus_per_trial: float = -1.0,
    min_delta: float = -1.0,
    model_name: str = "",
    warm_start: str = "",
    mlflow_uri: str = "",
    dvc_remote: str = "",
    videos: list = [],
    roc_points: int = 200,
    store: Input[Dataset] = None,
    store_dir: str = "",
    run_id: str = "",
):
    """Evaluate `model` on the labelled test split of `store` (or of the store at `store_dir`)
    and on the held-out end of its training videos; without labels, the registry's champion
    (`model_name`, else the params' `registry.model_name`) is scored on the same held-out footage
    for the promotion gate.

    `roc_points` thins the curve shown in the KFP UI; the full curve stays in evaluation/roc.csv.
    `run_id` (the KFP run's) tags the MLflow run.
    """
    from pathlib import Path

    from pseudovad import kubeflow
    from pseudovad.evaluation import metrics as metrics_mod
    from pseudovad.evaluation import report as report_mod
    from pseudovad.stages import evaluate as stage

    cfg = kubeflow.step_config(locals())
    result = stage.run(cfg, model=model.path, store=store_dir or store.path, out=evaluation.path,
                       videos=[str(v) for v in videos] or None)

    for k, v in kubeflow.numbers(result, ("auc_micro", "auc_macro", "auc_raw", "eer", "frames", "anomalous_frames",
                                             "event_recall", "false_alarms_per_hour", "holdout_flagged_share",
                                             "holdout_false_alarms_per_hour", "synthetic_auc")).items():
        metrics.log_metric(k, v)
    evaluation.metadata.update({k: result.get(k) for k in ("fingerprint", "evidence", "auc_micro", "synthetic_auc")})
    roc.log_roc_curve(*metrics_mod.thin_roc(*report_mod.read_roc(Path(evaluation.path, "roc.csv")), roc_points))
    Path(report.path).write_text(report_mod.evaluation_markdown(result))
