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
) -> int:
    """Add new footage under `source` to the training split of the store at `store_dir` (a
    volume that outlives the run: the store grows run after run); returns the number of videos
    added. S3 credentials come from the environment (the pipeline's S3 secret), never from
    parameters. (A single return value: kfp.local evaluates dsl.If only on outputs named Output.)"""
    from pathlib import Path

    import yaml

    from pseudovad import config
    from pseudovad.errors import StorageError
    from pseudovad.stages import ingest as stage

    typed = {"ingest": {"quarantine": quarantine_dir}} if quarantine_dir else {}
    cfg = config.load(None, [str(o) for o in overrides],
                      extra=config.deep_merge(yaml.safe_load(params) or {}, typed))
    summary = stage.run(cfg, source=source, store=store_dir, progress=False)
    lines = stage.describe(summary)
    Path(report.path).write_text("## ingest\n\n" + "\n".join(f"    {line}" for line in lines) + "\n")
    print("\n".join(lines))
    if summary["failed"]:
        # what was downloaded is committed; the step's retry (or the next run) fetches the rest
        raise StorageError(f"{len(summary['failed'])} file(s) under {summary['source']} could not be downloaded")
    for key in ("listed", "known", "duplicates", "frames"):
        counts.log_metric(key, summary[key])
    for key in ("ingested", "quarantined", "failed"):
        counts.log_metric(key, len(summary[key]))
    return len(summary["ingested"])
