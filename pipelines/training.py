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

NAME = "pseudovad-training"


def train_evaluate_register(p: dict, *, store=None, store_dir=None, tuned=None, init="", warm_start=False,
                            volume=None, cache: bool = True) -> tuple:
    """train → evaluate → register, shared by both tune branches and by the retraining pipeline.

    `p` holds the pipeline parameters; the frame store is an artifact (`store`) or a path on the
    volume `volume` = (pvc name, mount path) that train and evaluate then mount (`store_dir`).
    Without `volume`, train mounts the checkpoint volume.
    """
    common = {"params": p["params"], "overrides": p["overrides"], "mlflow_uri": p["mlflow_uri"]}
    data = {"store": store} if store is not None else {"store_dir": store_dir}
    extra = {"tuned": tuned} if tuned is not None else {}
    tr = train(**data, **extra, **common, method=p["method"], pseudo_kind=p["pseudo_kind"], lam=p["lam"], p=p["p"],
               sigma=p["sigma"], mask_ratio=p["mask_ratio"], epochs=p["epochs"], init=init, warm_start=warm_start,
               model_name=p["model_name"], checkpoint_dir=p["checkpoint_dir"],
               run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    tasks.step(tr, "train", cache=cache)
    tasks.gpu(tr, p["accelerator_type"], p["gpu_limit"], p["gpu_node_selector"], p["gpu_tolerations"])
    tasks.preemptible(tr)
    tasks.mlflow_secret(tr, p["mlflow_secret"])
    if volume is None:
        tasks.checkpoints(tr, p["checkpoint_pvc"])
    else:
        tasks.volume(tr, *volume)

    ev = evaluate(**data, model=tr.outputs["model"], **common)
    tasks.step(ev, "evaluate", cache=cache)
    tasks.preemptible(ev)   # idempotent: a re-run recomputes the same scores
    tasks.mlflow_secret(ev, p["mlflow_secret"])
    if volume is not None:
        tasks.volume(ev, *volume)

    rg = register(model=tr.outputs["model"], evaluation=ev.outputs["evaluation"], model_name=p["model_name"],
                  min_delta=p["min_delta"], **common)
    tasks.step(rg, "register", cache=False)   # never retried either: it changes the registry
    tasks.mlflow_secret(rg, p["mlflow_secret"])
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
    pp = dict(locals())
    footage = dsl.importer(artifact_uri=dataset_uri, artifact_class=Dataset, reimport=False)
    footage.set_display_name("dataset")
    ex = extract(footage=footage.output, params=params, overrides=overrides)
    tasks.step(ex, "extract", cache=True)
    tasks.preemptible(ex)
    store = ex.outputs["store"]

    with dsl.If(run_tune == True, name="tuned"):  # noqa: E712 (a pipeline condition, not Python truth)
        tu = tune(store=store, params=params, overrides=overrides, method=method, pseudo_kind=pseudo_kind,
                  lam=lam, p=p, sigma=sigma, mask_ratio=mask_ratio, num_samples=tune_samples,
                  gpus_per_trial=tune_gpus_per_trial, mlflow_uri=mlflow_uri, checkpoint_dir=checkpoint_dir,
                  run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        tasks.step(tu, "tune", cache=True)
        tasks.gpu(tu, accelerator_type, gpu_limit, gpu_node_selector, gpu_tolerations)
        tasks.preemptible(tu)
        tasks.checkpoints(tu, checkpoint_pvc)
        tasks.mlflow_secret(tu, mlflow_secret)
        train_evaluate_register(pp, store=store, tuned=tu.outputs["best"])
    with dsl.Else(name="untuned"):
        train_evaluate_register(pp, store=store)
