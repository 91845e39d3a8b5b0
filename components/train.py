"""KFP component: `train` — frame store → model.pt (Model), final losses (Metrics), history."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.image import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def train(
    model: Output[Model],
    metrics: Output[Metrics],
    history: Output[Artifact],
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
    epochs: int = 60,
    mlflow_uri: str = "",
    init: str = "",
    warm_start: bool = False,
    model_name: str = "",
    checkpoint_dir: str = "",
    run_id: str = "",
    store: Input[Dataset] = None,
    store_dir: str = "",
    tuned: Input[Artifact] = None,
):
    """Train on the frame store `store` (an artifact) or at `store_dir` (a mounted volume).

    Checkpoints go to `checkpoint_dir/<run_id>/train`, on a volume, so a retried pod resumes.

    Starts from what a retraining round starts from (`pseudovad.retraining.warm_start_weights`):
    with `warm_start` the registry's champion of `model_name` (default pseudovad-<method>), pinned
    by version, else `init` (a model.pt or MLflow URI; empty: params' train.init, or scratch).
    Settings: `pseudovad.kubeflow.step_config` (params < typed parameters < tuned < overrides).
    """
    from pseudovad import config as config_mod
    from pseudovad import kubeflow, retraining
    from pseudovad.stages import train as stage

    cfg = kubeflow.step_config(locals(), tuned=kubeflow.tuned_values(tuned.path) if tuned is not None else None)
    cfg = config_mod.with_values(cfg, {"train.init": retraining.warm_start_weights(cfg)})
    work = kubeflow.work_dir(checkpoint_dir, run_id, "train", model.path)
    summary = stage.run(cfg, store=store_dir or store.path, out=work, progress=False)

    published = kubeflow.publish_training(cfg, work, model.path, history.path)
    model.metadata.update(published["model"])
    history.metadata["summary"] = published["summary"]
    for k, v in kubeflow.numbers(summary).items():
        metrics.log_metric(k, v)
