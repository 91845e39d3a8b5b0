"""The retraining pipeline, for a recurring run: ingest → train (warm start) → evaluate → register.

Operators drop new normal footage under an S3 prefix; each run ingests what is new into a frame
store kept on a volume (it grows run after run, and its labelled test split — the fixed
evaluation set — stays put), fine-tunes from the registry's champion, evaluates on that same
test split and lets the promotion gate decide. The ingest step plans the round exactly as
`pseudovad retrain` does (`pseudovad.retraining.plan_round`): when a registered version was
already trained on exactly the training split now on the volume, there is nothing to learn and
the run stops after ingest (its report says so); a run after a failed one still trains; files
whose download still fails are reported and the round trains on what arrived. Nothing is cached:
the bucket and the champion change between runs while the parameters do not. With `dvc_remote`
(and `repo_url` / `revision`), an empty volume is filled from the project's DVC data, and each
round's store and accepted footage are committed and pushed there (`pseudovad.dvc_cache`).
"""
from kfp import dsl

from components import ingest
from pipelines import tasks
from pipelines.tasks import DATA_MOUNT, DEFAULT_GPU_TOLERATIONS
from pipelines.training import train_evaluate_register
from pseudovad.kubeflow import step_arguments

NAME = "pseudovad-retraining"


@dsl.pipeline(name=NAME, description="pseudovad: ingest new footage (S3) → warm-start train (GPU) → evaluate on "
                                     "the fixed test set → register with the promotion gate")
def retraining_pipeline(
    source: str,
    mlflow_uri: str,
    store_dir: str = f"{DATA_MOUNT}/store",
    quarantine_dir: str = f"{DATA_MOUNT}/quarantine",
    data_pvc: str = "pseudovad-data",
    s3_secret: str = "pseudovad-s3",
    warm_start: bool = True,
    repo_url: str = "",
    revision: str = "",
    dvc_remote: str = "",
    git_secret: str = "pseudovad-git",
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
    epochs: int = 20,
    min_delta: float = 0.0,
    model_name: str = "",
    params: str = "",
    overrides: list = [],
    accelerator_type: str = "nvidia.com/gpu",
    gpu_limit: int = 1,
    gpu_node_selector: dict = {},
    gpu_tolerations: list = DEFAULT_GPU_TOLERATIONS,
    checkpoint_dir: str = f"{DATA_MOUNT}/checkpoints",
    mlflow_secret: str = "pseudovad-mlflow",
):
    args = dict(locals())
    ing = ingest(source=source, store_dir=store_dir, repo_url=repo_url, revision=revision,
                 **step_arguments(args, ingest))
    tasks.step(ing, "ingest", cache=False)
    tasks.preemptible(ing)      # downloads resume; what was committed is not fetched again
    tasks.volume(ing, data_pvc, DATA_MOUNT)
    tasks.s3_secret(ing, s3_secret)          # the footage bucket and the DVC remote
    tasks.git_secret(ing, git_secret)
    tasks.mlflow_secret(ing, mlflow_secret)

    with dsl.If(ing.outputs["Output"] == True, name="new-data"):  # noqa: E712 (a pipeline condition)
        train_evaluate_register(args, store_dir=store_dir, volume=(data_pvc, DATA_MOUNT), cache=False)
