"""KFP component: `tune` — frame store → best values (Artifact: best_params.yaml, results.csv,
metrics.json + provenance.json with best_config) + search metrics."""
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
    checkpoint_dir: str = "",
    run_id: str = "",
):
    """Ray Tune search around the same base settings train gets (the searched keys vary).

    `tune.gpus_per_trial` shares the pod's GPUs between concurrent trials (0: trials on CPU).
    Its experiment folder lives in `checkpoint_dir/<run_id>/tune`, so a retried pod restores
    the search instead of starting over."""
    from pseudovad import kubeflow
    from pseudovad.stages import tune as stage

    cfg = kubeflow.step_config(locals())
    work = kubeflow.work_dir(checkpoint_dir, run_id, "tune", best.path)
    summary = stage.run(cfg, store=store.path, out=work)

    kubeflow.publish_tuning(work, best.path)
    best.metadata["best_config"] = summary["best_config"]
    for k, v in kubeflow.numbers(summary, ("best_val_auc", "test_auc", "test_auc_macro", "test_eer", "trials",
                                              "completed", "stopped_early", "errored")).items():
        metrics.log_metric(k, v)
