"""The training pipeline: dataset → extract → (tune) → train → evaluate → register.

The dataset is imported by URI (s3://, gs://, minio:// — the KFP launcher downloads it into the
step — or a local path for `pseudovad-kfp local`). Train and tune run on a GPU node; both retry
after a preemption and resume from their checkpoints on the checkpoint volume. Extract is
cached (same dataset + same params → same frame store); register never is (it changes the
registry).
"""
from kfp import dsl
from kfp.dsl import Dataset

from components import evaluate, extract, register, train, tune
from pipelines import tasks
from pipelines.tasks import CHECKPOINT_MOUNT, DEFAULT_GPU_TOLERATIONS
from pseudovad.kubeflow import step_arguments

NAME = "pseudovad-training"


def train_evaluate_register(args: dict, *, store=None, store_dir=None, tuned=None, volume=None,
                            cache: bool = True) -> tuple:
    """train → evaluate → register, shared by both tune branches and by the retraining pipeline.

    `args` holds the pipeline's parameters (each step takes the settings it knows by name,
    `pseudovad.kubeflow.step_arguments`); the frame store is an artifact (`store`) or a path on
    the volume `volume` = (pvc name, mount path) that train and evaluate then mount (`store_dir`).
    Without `volume`, train mounts the checkpoint volume.
    """
    data = {"store": store} if store is not None else {"store_dir": store_dir}
    extra = {"tuned": tuned} if tuned is not None else {}
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


@dsl.pipeline(name=NAME, description="pseudovad: extract → optional Ray Tune → train (GPU) → evaluate → "
                                     "register with the MLflow promotion gate")
def training_pipeline(
    dataset_uri: str,
    mlflow_uri: str,
    method: str = "ltgpa",
    pseudo_kind: str = "learned",
    lam: float = 0.1,
    p: float = 0.5,
    sigma: float = 0.1,
    mask_ratio: float = 0.75,
    epochs: int = 60,
    run_tune: bool = False,
    tune_samples: int = 8,
    tune_gpus_per_trial: float = 1.0,
    min_delta: float = 0.0,
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
):
    args = dict(locals())
    footage = dsl.importer(artifact_uri=dataset_uri, artifact_class=Dataset, reimport=False)
    footage.set_display_name("dataset")
    ex = extract(footage=footage.output, **step_arguments(args, extract))
    tasks.step(ex, "extract", cache=True)
    tasks.preemptible(ex)
    tasks.staging(ex)
    store = ex.outputs["store"]

    with dsl.If(run_tune == True, name="tuned"):  # noqa: E712 (a pipeline condition, not Python truth)
        tu = tune(store=store, **step_arguments(args, tune), checkpoint_dir=checkpoint_dir,
                  run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        tasks.step(tu, "tune", cache=True)
        tasks.gpu(tu, accelerator_type, gpu_limit, gpu_node_selector, gpu_tolerations)
        tasks.preemptible(tu)
        tasks.checkpoints(tu, checkpoint_pvc)
        tasks.mlflow_secret(tu, mlflow_secret)
        train_evaluate_register(args, store=store, tuned=tu.outputs["best"])
    with dsl.Else(name="untuned"):
        train_evaluate_register(args, store=store)
