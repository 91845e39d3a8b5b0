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

    Returns whether there is anything to learn (`pseudovad.stages.retrain.nothing_to_learn`, the
    rule `pseudovad retrain` applies too); failed downloads fail the step, so it retries.
    (One unnamed output: kfp.local evaluates dsl.If only on outputs named Output.)
    """
    from pathlib import Path

    from pseudovad import kubeflow
    from pseudovad.stages import retrain

    cfg = kubeflow.from_layers(params, {"ingest.quarantine": quarantine_dir, "registry.model_name": model_name},
                                  overrides, mlflow_uri=mlflow_uri)
    step = retrain.ingest_step(cfg, source=source, store=store_dir)
    Path(report.path).write_text(kubeflow.markdown("ingest", log=step["lines"]))
    print("\n".join(step["lines"]))
    for key, value in step["counts"].items():
        counts.log_metric(key, value)
    return step["learn"]
