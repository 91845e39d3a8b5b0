"""KFP component: `extract` — the frame store (Dataset), through the project's DVC remote when the
pipeline names one, else decoded from the imported dataset artifact."""
from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def extract(
    store: Output[Dataset],
    report: Output[Markdown],
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
    repo_url: str = "",
    revision: str = "",
    footage: Input[Dataset] = None,
):
    """The frame store for these settings, in `store`.

    With `dvc_remote` (the DVC remote's s3:// URL): the project at `revision` of `repo_url`, its
    params.yaml under `params` (when not empty) and `overrides`; the store is pulled when that
    revision's dvc.lock or the remote's run cache has it, else extracted by the revision's own
    `extract` stage and pushed (`pseudovad.dvc_cache`). Without: `footage` (benchmark layout,
    labels in testing/) is decoded, as `pseudovad extract` does. Either way the store's metadata
    carries its DVC version (`data_version`) and its evaluation set's (`evaluation_version`).
    """
    from pathlib import Path

    from pseudovad import kubeflow

    if dvc_remote:
        from pseudovad.dvc_cache import Checkout

        checkout = Checkout.clone(repo_url, revision, f"{store.path}.work")
        cfg = kubeflow.step_config({**locals(), "params": params or checkout.params_text})
        checkout.use_remote(cfg)
        got = checkout.materialize("extract", cfg)
        checkout.move_out(got, store.path)
        log, version = got.log, got.version
        meta = {**got.metadata(), "git_commit": checkout.commit}
    else:
        from pseudovad.errors import DataError
        from pseudovad.stages import extract as stage

        cfg = kubeflow.step_config(locals())
        if footage is None:
            raise DataError("extract: no footage artifact and no dvc_remote: nothing to extract from")
        stage.run(cfg, root=footage.path, store=store.path, progress=False)
        log = ["extract: no DVC remote (dvc_remote is empty): decoded the imported dataset; only the KFP cache "
               "reuses this store"]
        meta, version = {"dvc_how": "imported", "decoded": True}, None
    print("\n".join(log))
    meta.update(kubeflow.store_metadata(cfg, store.path, version))
    store.metadata.update(meta)
    Path(report.path).write_text(kubeflow.markdown("extract", log=log, data=meta))
