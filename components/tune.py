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
    method: str = "ltgpa",
    pseudo_kind: str = "learned",
    lam: float = 0.1,
    p: float = 0.5,
    sigma: float = 0.1,
    jumps: list = [2, 3, 4, 5],
    patch_max_size: float = 0.5,
    patch_max_move: int = 10,
    patch_source: str = "",
    pseudo_loss: str = "reconstruct_normal",
    mask_ratio: float = 0.75,
    tune_samples: int = 8,
    tune_gpus_per_trial: float = 1.0,
    mlflow_uri: str = "",
    checkpoint_dir: str = "",
    run_id: str = "",
):
    """Ray Tune search around the same base settings train gets (the searched keys vary).

    `tune_gpus_per_trial` shares the pod's GPUs between concurrent trials (0: trials on CPU).
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
