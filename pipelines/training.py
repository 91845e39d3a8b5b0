"""The training pipeline: frames → extract → (tune) → train → evaluate → register.

The frames come one of two ways, a branch each (kfp.local cannot merge branch outputs with
dsl.OneOf, so each branch has its own tune / train / evaluate / register):
- `dvc_remote` set: the project's git repository (`repo_url`) at `revision` and its DVC remote:
  extract pulls the frame store a laptop's `dvc repro && dvc push` (or an earlier run) made,
  else runs the revision's extract stage and pushes it (`pseudovad.dvc_cache`). Not KFP-cached:
  DVC is the cache, and a branch name's commit moves.
- else: the dataset imported by URI (s3://, gs://, minio:// — the KFP launcher downloads it into
  the step — or a local path for `pseudovad-kfp local`), decoded; extract is KFP-cached (same
  dataset + same params → same frame store).
Train and tune run on a GPU node; both retry after a preemption and resume from their
checkpoints on the checkpoint volume. Register is never cached (it changes the registry).
"""
from kfp import dsl
from kfp.dsl import Dataset

from components import evaluate, extract, register, train, tune
from pipelines import tasks
from pipelines.parameters import described
from pipelines.tasks import CHECKPOINT_MOUNT, DEFAULT_GPU_TOLERATIONS
from pseudovad.kubeflow import step_arguments

NAME = "pseudovad-training"


def train_evaluate_register(args: dict, *, store=None, store_dir=None, tuned=None, volume=None,
                            cache: bool = True, retraining_round: bool = False) -> tuple:
    """train → evaluate → register, shared by both tune branches and by the retraining pipeline.

    `args` holds the pipeline's parameters (each step takes the settings it knows by name,
    `pseudovad.kubeflow.step_arguments`); the frame store is an artifact (`store`) or a path on
    the volume `volume` = (pvc name, mount path) that train and evaluate then mount (`store_dir`).
    Without `volume`, train mounts the checkpoint volume. A `retraining_round` warm-starts from
    the champion as `pseudovad retrain` does.
    """
    data = {"store": store} if store is not None else {"store_dir": store_dir}
    extra = {"tuned": tuned} if tuned is not None else {}
    if retraining_round:
        extra["retraining_round"] = True
    tr = train(**data, **extra, **step_arguments(args, train), checkpoint_dir=args["checkpoint_dir"],
               run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    tasks.step(tr, "train", cache=cache)
    tasks.gpu(tr, args["accelerator_type"], args["gpu_limit"], args["gpu_node_selector"], args["gpu_tolerations"])
    tasks.preemptible(tr)
    tasks.mlflow_secret(tr, args["mlflow_secret"])
    if volume is None:
        tasks.checkpoints(tr, args["checkpoint_pvc"])
    else:
        tasks.volume(tr, *volume)

    ev = evaluate(**data, model=tr.outputs["model"], run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                  **step_arguments(args, evaluate))
    tasks.step(ev, "evaluate", cache=cache)
    tasks.preemptible(ev)   # idempotent: a re-run recomputes the same scores
    tasks.mlflow_secret(ev, args["mlflow_secret"])
    if volume is not None:
        tasks.volume(ev, *volume)

    rg = register(model=tr.outputs["model"], evaluation=ev.outputs["evaluation"], run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                  **step_arguments(args, register))
    tasks.step(rg, "register", cache=False)   # never retried either: it changes the registry
    tasks.mlflow_secret(rg, args["mlflow_secret"])
    return tr, ev, rg


def tune_train_evaluate_register(args: dict, store) -> None:
    """The optional Ray Tune step, then train → evaluate → register, on the frame store `store`."""
    with dsl.If(args["run_tune"] == True, name="tuned"):  # noqa: E712 (a pipeline condition, not Python truth)
        tu = tune(store=store, **step_arguments(args, tune), checkpoint_dir=args["checkpoint_dir"],
                  run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        tasks.step(tu, "tune", cache=True)
        tasks.gpu(tu, args["accelerator_type"], args["gpu_limit"], args["gpu_node_selector"], args["gpu_tolerations"])
        tasks.preemptible(tu)
        tasks.checkpoints(tu, args["checkpoint_pvc"])
        tasks.mlflow_secret(tu, args["mlflow_secret"])
        train_evaluate_register(args, store=store, tuned=tu.outputs["best"])
    with dsl.Else(name="untuned"):
        train_evaluate_register(args, store=store)


@dsl.pipeline(name=NAME, description="pseudovad: extract (through the DVC remote, or from an imported dataset) → "
                                     "optional Ray Tune → train (GPU) → evaluate → register with the MLflow "
                                     "promotion gate")
@described
def training_pipeline(
    mlflow_uri: str,
    dataset_uri: str = "",
    repo_url: str = "",
    revision: str = "",
    dvc_remote: str = "",
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
    run_tune: bool = False,
    tune_samples: int = -1,
    tune_gpus_per_trial: float = -1.0,
    min_delta: float = -1.0,
    model_name: str = "",
    params: str = "",
    overrides: list = [],
    accelerator_type: str = "nvidia.com/gpu",
    gpu_limit: int = 1,
    gpu_node_selector: dict = {},
    gpu_tolerations: list = DEFAULT_GPU_TOLERATIONS,
    checkpoint_pvc: str = "pseudovad-checkpoints",
    checkpoint_dir: str = CHECKPOINT_MOUNT,
    mlflow_secret: str = "pseudovad-mlflow",
    s3_secret: str = "pseudovad-s3",
    git_secret: str = "pseudovad-git",
):
    """Frames → extract → (tune) → train → evaluate → register.

    Args:
        dataset_uri: without `dvc_remote` (then required): the dataset root to import
            (`s3://bucket/ped2`; a folder for `pseudovad-kfp local`)
        repo_url: with `dvc_remote` (then required): the project's git repository (`https://…`,
            a path or a `file://` URL)
        revision: its branch, tag (e.g. a data version tag) or commit; empty: the default
            branch's head
        run_tune: run Ray Tune first and train with its best values
        params: a params.yaml's text (what `-P` passes); empty: the code defaults (the papers'
            GPU settings)
        overrides: `key=value` strings, any params key, applied last
        accelerator_type: the GPU resource of train and tune (a Kubernetes resource name)
        gpu_limit: GPUs per train / tune pod
        gpu_node_selector: node labels for train and tune, e.g.
            `{cloud.google.com/gke-accelerator: nvidia-l4}`
        gpu_tolerations: tolerations for train and tune (a list of Kubernetes tolerations)
        checkpoint_pvc: the PVC mounted at /mnt/pseudovad-checkpoints on train and tune
        checkpoint_dir: where train and tune checkpoint; on the volume, or a retried pod starts
            over
        mlflow_secret: optional secret with the MLflow credentials (MLFLOW_TRACKING_USERNAME,
            MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_TOKEN)
        s3_secret: optional secret with the S3 credentials of the DVC remote
        git_secret: optional secret with `GIT_TOKEN` (and `GIT_USERNAME`) for a private
            `repo_url` over https
    """
    args = dict(locals())
    with dsl.If(dvc_remote == "", name="imported-dataset"):
        footage = dsl.importer(artifact_uri=dataset_uri, artifact_class=Dataset, reimport=False)
        footage.set_display_name("dataset")
        ex = extract(footage=footage.output, **step_arguments(args, extract))
        tasks.step(ex, "extract", cache=True)
        tasks.preemptible(ex)
        tasks.staging(ex)
        tune_train_evaluate_register(args, ex.outputs["store"])
    with dsl.Else(name="dvc"):
        ex = extract(repo_url=repo_url, revision=revision, **step_arguments(args, extract))
        tasks.step(ex, "extract", cache=False)
        tasks.preemptible(ex)       # idempotent: a retry pulls what the killed pod pushed
        tasks.staging(ex)           # the checkout and the store are staged beside the output artifact
        tasks.s3_secret(ex, s3_secret)
        tasks.git_secret(ex, git_secret)
        tune_train_evaluate_register(args, ex.outputs["store"])
