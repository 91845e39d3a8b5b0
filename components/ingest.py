"""KFP component: `ingest` — new normal footage (S3 prefix or folder) → the persistent frame store."""
from kfp import dsl
from kfp.dsl import Markdown, Metrics, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(
    source: str,
    store_dir: str,
    report: Output[Markdown],
    counts: Output[Metrics],
    params: str = "",
    overrides: list = [],
    quarantine_dir: str = "",
    mlflow_uri: str = "",
    model_name: str = "",
) -> bool:
    """Add new footage under `source` to the training split of the store at `store_dir` (a
    volume that outlives the run: the store grows run after run). S3 credentials come from the
    environment (the pipeline's S3 secret), never from parameters.

    Returns whether there is anything to learn: False when a registered version of the model was
    already trained on exactly this training split (the fingerprint register tags versions with),
    so a run without new footage trains nothing, while a run after a failed one still trains.
    (One unnamed output: kfp.local evaluates dsl.If only on outputs named Output.)
    """
    import os
    from pathlib import Path

    import yaml

    from pseudovad import config, tracking
    from pseudovad.data.store import FrameStore
    from pseudovad.errors import StorageError
    from pseudovad.stages import ingest as stage

    typed = {"ingest": {"quarantine": quarantine_dir}} if quarantine_dir else {}
    if mlflow_uri:
        typed["tracking"] = {"uri": mlflow_uri}
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri
    if model_name:
        typed["registry"] = {"model_name": model_name}
    cfg = config.load(None, [str(o) for o in overrides],
                      extra=config.deep_merge(yaml.safe_load(params) or {}, typed))
    summary = stage.run(cfg, source=source, store=store_dir, progress=False)
    lines = stage.describe(summary)
    if summary["failed"]:
        # what was downloaded is committed; the step's retry (or the next run) fetches the rest
        raise StorageError(f"{len(summary['failed'])} file(s) under {summary['source']} could not be downloaded")

    fingerprint = FrameStore(store_dir).fingerprint("training")
    name = cfg.registered_model_name
    uri = tracking.configure(cfg)
    with tracking.errors(f"registry {name} at {tracking.redact(uri)}", uri):
        done = tracking.client().search_model_versions(f"name = '{name}' and tags.train_fingerprint = '{fingerprint}'")
    if done:
        lines.append(f"nothing to learn: {name} v{done[0].version} was trained on exactly this training split")
    Path(report.path).write_text("## ingest\n\n" + "\n".join(f"    {line}" for line in lines) + "\n")
    print("\n".join(lines))
    for key in ("listed", "known", "duplicates", "frames"):
        counts.log_metric(key, summary[key])
    for key in ("ingested", "quarantined", "failed"):
        counts.log_metric(key, len(summary[key]))
    return not done
