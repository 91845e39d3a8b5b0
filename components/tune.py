"""KFP component: `tune` — frame store → best values (Artifact: best_params.yaml, results.csv,
metrics.json with best_config) + search metrics."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components.image import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def tune(
    store: Input[Dataset],
    best: Output[Artifact],
    metrics: Output[Metrics],
    params: str = "",
    overrides: list = [],
    method: str = "ltgpa",
    pseudo_kind: str = "learned",
    lam: float = 0.1,
    p: float = 0.5,
    sigma: float = 0.1,
    mask_ratio: float = 0.75,
    num_samples: int = 8,
    gpus_per_trial: float = 1.0,
    mlflow_uri: str = "",
    checkpoint_dir: str = "",
    run_id: str = "",
):
    """Ray Tune search around the same base settings train gets (the searched keys vary).

    `gpus_per_trial` shares the pod's GPUs between concurrent trials (0: trials on CPU).
    Its experiment folder lives in `checkpoint_dir/<run_id>/tune`, so a retried pod restores
    the search instead of starting over."""
    import os
    import shutil
    from pathlib import Path

    import yaml

    from pseudovad import config
    from pseudovad.stages import tune as stage

    typed = {"model": {"method": method}, "tune": {"num_samples": num_samples, "gpus_per_trial": gpus_per_trial},
             "pseudo": {"kind": pseudo_kind, "lam": lam, "p": p, "sigma": sigma, "mask_ratio": mask_ratio}}
    if mlflow_uri:
        typed["tracking"] = {"uri": mlflow_uri}
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri   # also for MLflow calls made without the config
    cfg = config.load(None, [str(o) for o in overrides],
                      extra=config.deep_merge(yaml.safe_load(params) or {}, typed))
    work = Path(checkpoint_dir, run_id or "run", "tune") if checkpoint_dir else Path(best.path + ".work")
    summary = stage.run(cfg, store=store.path, out=work)

    Path(best.path).mkdir(parents=True, exist_ok=True)
    for name in ("best_params.yaml", "results.csv", "metrics.json"):
        shutil.copyfile(work / name, Path(best.path, name))
    best.metadata["best_config"] = summary["best_config"]
    for k in ("best_val_auc", "test_auc", "test_auc_macro", "test_eer", "trials", "completed", "stopped_early",
              "errored"):
        if summary.get(k) is not None:
            metrics.log_metric(k, summary[k])
    shutil.rmtree(work)   # trial checkpoints: the search is over, they only fill the volume
