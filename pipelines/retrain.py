"""The retraining pipeline, for a recurring run: ingest → train (warm start) → evaluate → register.

Operators drop new normal footage under an S3 prefix; each run ingests what is new into a frame
store kept on a volume (it grows run after run, and its labelled test split — the fixed
evaluation set — stays put), fine-tunes from the registry's champion, evaluates on that same
test split — or, for a camera without labels, on the held-out end of every training video, the
champion scored beside it (label-free) — and lets the promotion gate decide. The ingest step plans the round exactly as
`pseudovad retrain` does (`pseudovad.retrain.plan_round`): when a registered version was
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
from pipelines.parameters import described
from pipelines.tasks import DATA_MOUNT, DEFAULT_GPU_TOLERATIONS
from pipelines.training import train_evaluate_register
from pseudovad.kubeflow import step_arguments

NAME = "pseudovad-retrain"


@dsl.pipeline(name=NAME, description="pseudovad: ingest new footage (S3) → warm-start train (GPU) → evaluate on "
                                     "the fixed test set → register with the promotion gate")
@described
def retrain_pipeline(
    source: str,
    mlflow_uri: str,
    store_dir: str = f"{DATA_MOUNT}/store",
    quarantine_dir: str = f"{DATA_MOUNT}/quarantine",
    data_pvc: str = "pseudovad-data",
    s3_secret: str = "pseudovad-s3",
    warm_start: str = "",
    repo_url: str = "",
    revision: str = "",
    dvc_remote: str = "",
    git_secret: str = "pseudovad-git",
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
    min_delta: float = -1.0,
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
    """Ingest → train (warm start) → evaluate → register.

    Args:
        source: new footage: `s3://bucket/prefix/` or a folder
        store_dir: the persistent frame store, on the data volume
        quarantine_dir: where rejected footage goes, with the reasons, on the data volume; empty:
            `ingest.quarantine`
        data_pvc: the PVC mounted at /mnt/pseudovad-data on ingest, train and evaluate
        s3_secret: optional secret with the S3 credentials: the footage bucket and the DVC remote
        repo_url: with `dvc_remote` (then required): the project's git repository (`https://…`,
            a path or a `file://` URL)
        revision: its branch, tag or commit; empty: the default branch's head
        git_secret: optional secret with `GIT_TOKEN` (and `GIT_USERNAME`) for a private
            `repo_url` over https
        params: a params.yaml's text (what `-P` passes); empty: the code defaults (the papers'
            GPU settings)
        overrides: `key=value` strings, any params key, applied last
        accelerator_type: the GPU resource of train (a Kubernetes resource name)
        gpu_limit: GPUs per train pod
        gpu_node_selector: node labels for train, e.g.
            `{cloud.google.com/gke-accelerator: nvidia-l4}`
        gpu_tolerations: tolerations for train (a list of Kubernetes tolerations)
        checkpoint_dir: where train checkpoints; on the volume, or a retried pod starts over
        mlflow_secret: optional secret with the MLflow credentials (MLFLOW_TRACKING_USERNAME,
            MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_TOKEN)
    """
    args = dict(locals())
    ing = ingest(source=source, store_dir=store_dir, quarantine_dir=quarantine_dir, repo_url=repo_url,
                 revision=revision, **step_arguments(args, ingest))
    tasks.step(ing, "ingest", cache=False)
    tasks.preemptible(ing)      # downloads resume; what was committed is not fetched again
    tasks.volume(ing, data_pvc, DATA_MOUNT)
    tasks.s3_secret(ing, s3_secret)          # the footage bucket and the DVC remote
    tasks.git_secret(ing, git_secret)
    tasks.mlflow_secret(ing, mlflow_secret)

    with dsl.If(ing.outputs["Output"] == True, name="new-data"):  # noqa: E712 (a pipeline condition)
        train_evaluate_register(args, store_dir=store_dir, volume=(data_pvc, DATA_MOUNT), cache=False,
                                retraining_round=True)
