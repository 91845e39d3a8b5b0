"""KFP component: `ingest` — new normal footage (S3 prefix or folder) → the persistent frame store,
and the retraining round's plan (whether to train)."""
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
    warm_start: bool = True,
) -> bool:
    """Plan the retraining round (`pseudovad.retraining.plan_round`, what `pseudovad retrain` does
    too): add new footage under `source` to the training split of the store at `store_dir` (a
    volume that outlives the run: the store grows run after run), and decide whether there is
    anything to learn. S3 credentials come from the environment (the pipeline's S3 secret), never
    from parameters. Downloads that still fail after retries are listed in the report and its
    metadata (`failed`) and counted; the round goes on with what arrived. A store without a
    labelled test split fails the step.

    Returns whether to train. (One unnamed output: kfp.local evaluates dsl.If only on outputs
    named Output.)
    """
    from pathlib import Path

    from pseudovad import kubeflow, retraining

    cfg = kubeflow.step_config(locals())
    plan = retraining.plan_round(cfg, store=store_dir, source=source)
    lines = plan.report()
    Path(report.path).write_text(kubeflow.markdown("ingest", log=lines, data=plan.metadata()))
    report.metadata.update(plan.metadata())
    print("\n".join(lines))
    for key, value in plan.counts().items():
        counts.log_metric(key, value)
    return plan.learn
