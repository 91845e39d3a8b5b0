"""KFP component: `tune` — frame store → best params (Artifact holding best_params.yaml) + metrics."""
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
    num_samples: int = 8,
    mlflow_uri: str = "",
    checkpoint_dir: str = "",
    run_id: str = "",
):
    """Ray Tune search; its experiment folder lives in `checkpoint_dir/<run_id>/tune`, so a
    retried pod restores the search instead of starting over."""
    import os
    import shutil
    from pathlib import Path

    import yaml

    from pseudovad import config
    from pseudovad.stages import tune as stage

    typed = {"model": {"method": method}, "pseudo": {"kind": pseudo_kind}, "tune": {"num_samples": num_samples}}
    if mlflow_uri:
        typed["tracking"] = {"uri": mlflow_uri}
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri   # also for MLflow calls made without the config
    cfg = config.load(None, [str(o) for o in overrides],
                      extra=config.deep_merge(yaml.safe_load(params) or {}, typed))
    work = Path(checkpoint_dir, run_id or "run", "tune") if checkpoint_dir else Path(best.path + ".work")
    summary = stage.run(cfg, store=store.path, out=work)

    Path(best.path).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "best_params.yaml", Path(best.path, "best_params.yaml"))
    best.metadata["best"] = summary.get("best_config", {})
    for k, v in summary.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics.log_metric(k, v)
