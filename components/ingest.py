"""KFP component: `ingest` — new normal footage (S3 prefix or folder) → the persistent frame store,
and the retraining round's plan (whether to train)."""
from kfp import dsl
from kfp.dsl import Artifact, Markdown, Metrics, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(
    source: str,
    store_dir: str,
    report: Output[Markdown],
    counts: Output[Metrics],
    lock: Output[Artifact],
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
    quarantine_dir: str = "",
    repo_url: str = "",
    revision: str = "",
) -> bool:
    """Plan the retraining round (`pseudovad.retrain.plan_round`, what `pseudovad retrain` does
    too): add new footage under `source` to the training split of the store at `store_dir` (a
    volume that outlives the run: the store grows run after run), and decide whether there is
    anything to learn; rejected files go to `quarantine_dir` (a volume too; empty:
    `ingest.quarantine`). S3 credentials come from the environment (the pipeline's S3 secret), never
    from parameters. Downloads that still fail after retries are listed in the report and its
    metadata (`failed`) and counted; the round goes on with what arrived. A store that gives the
    gate no evidence (no labelled test split, and `train.holdout_fraction` 0) fails the step.

    With `dvc_remote` (and the project's `repo_url` at `revision`): a volume without a store is
    first filled from the revision's DVC data (pulled, or extracted and pushed); after ingest the
    store and the accepted footage are recorded as `dvc commit -f ingest extract` would and
    pushed, and the resulting dvc.lock is the `lock` artifact: put it in a checkout of that
    revision and `dvc pull` gets what this round ingested (`pseudovad.dvc_cache`).

    Returns whether to train. (One unnamed output: kfp.local evaluates dsl.If only on outputs
    named Output.)
    """
    import shutil
    from pathlib import Path

    from pseudovad import kubeflow, retrain

    checkout, folders, lines = None, {}, []
    if dvc_remote:
        from pseudovad.data.ingested import root_for
        from pseudovad.dvc_cache import Checkout

        checkout = Checkout.clone(repo_url, revision, f"{lock.path}.work")
        cfg = kubeflow.step_config({**locals(), "params": params or checkout.params_text})
        checkout.use_remote(cfg)
        folders = {"extract": Path(store_dir), "ingest": root_for(cfg, store_dir)}
        lines += checkout.seed(cfg, folders)
    else:
        cfg = kubeflow.step_config(locals())
        lines.append("ingest: no DVC remote (dvc_remote is empty): the store on the volume is versioned nowhere else")
    plan = retrain.plan_round(cfg, store=store_dir, source=source, quarantine=quarantine_dir or None)
    lines += plan.report()
    meta = plan.metadata()
    if checkout is not None:
        versions = checkout.record(folders)
        meta.update({"data_version": versions["extract"].md5, "ingested_version": versions["ingest"].md5,
                     "git_commit": checkout.commit})
        lines.append(f"ingest: dvc.lock records data/store {versions['extract'].md5} and the ingested footage "
                     f"{versions['ingest'].md5}; pushed both to the DVC remote (the `lock` artifact)")
        Path(lock.path).write_text(checkout.lock_text)
        lock.metadata.update(meta)
        shutil.rmtree(checkout.root, ignore_errors=True)
    else:
        Path(lock.path).write_text("")
    Path(report.path).write_text(kubeflow.markdown("ingest", log=lines, data=meta))
    report.metadata.update(meta)
    print("\n".join(lines))
    for key, value in plan.counts().items():
        counts.log_metric(key, value)
    return plan.learn
