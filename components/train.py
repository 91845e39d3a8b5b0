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
    retraining_round: bool = False,
    checkpoint_dir: str = "",
    run_id: str = "",
    store: Input[Dataset] = None,
    store_dir: str = "",
    tuned: Input[Artifact] = None,
):
    """Train on the frame store `store` (an artifact) or at `store_dir` (a mounted volume).

    Checkpoints go to `checkpoint_dir/<run_id>/train`, on a volume, so a retried pod resumes.

    Starts from `train.init` (a model.pt or MLflow URI; null: scratch), as `pseudovad train`
    does; a `retraining_round` starts as `pseudovad retrain` does
    (`pseudovad.retrain.warm_start_weights`): with `ingest.warm_start` from the registry's
    champion of `registry.model_name` (default pseudovad-<method>), pinned by version.
    Settings: `pseudovad.kubeflow.step_config` (params < typed parameters set < tuned < overrides);
    the settings it trained with go into `history` (params.yaml) and the MLflow run.
    """
    args = dict(locals())
    from pseudovad import config as config_mod
    from pseudovad import kubeflow, retrain
    from pseudovad.stages import train as stage

    cfg = kubeflow.step_config(args, tuned=kubeflow.tuned_values(tuned.path) if tuned is not None else None)
    if retraining_round:
        cfg = config_mod.with_values(cfg, {"train.init": retrain.warm_start_weights(cfg)})
    work = kubeflow.work_dir(checkpoint_dir, run_id, "train", model.path)
    summary = stage.run(cfg, store=store_dir or store.path, out=work, progress=False)

    published = kubeflow.publish_training(cfg, work, model.path, history.path)
    model.metadata.update(published["model"])
    history.metadata.update({"summary": published["summary"], "parameters_set": kubeflow.parameters_set(args)})
    for k, v in kubeflow.numbers(summary).items():
        metrics.log_metric(k, v)
