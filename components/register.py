"""KFP component: `register` — model + its evaluation → a registry version, the promotion gate."""
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    model: Input[Model],
    evaluation: Input[Artifact],
    decision: Output[Artifact],
    report: Output[Markdown],
    params: str = "",
    overrides: list = [],
    mlflow_uri: str = "",
    model_name: str = "",
    min_delta: float = 0.0,
    run_id: str = "",
) -> NamedTuple("RegisterOutputs", [("version", str), ("promoted", bool)]):
    """Register the model as a new version (alias `challenger`); `champion` moves only if it
    beats the current champion by `min_delta` micro AUC on the same evaluation set. `run_id` (the
    KFP run's) tags the MLflow run."""
    from collections import namedtuple
    from pathlib import Path

    from pseudovad import kubeflow
    from pseudovad.stages import register as stage

    cfg = kubeflow.step_config(locals())
    result = stage.run(cfg, model=model.path, metrics=str(Path(evaluation.path, "metrics.json")),
                       out=decision.path)
    decision.metadata.update({k: result[k] for k in ("model_name", "version", "model_uri", "promoted",
                                                     "champion_after", "reason")})
    Path(report.path).write_text(kubeflow.markdown(f"register: {result['model_uri']}", result["reason"], result))
    out = namedtuple("RegisterOutputs", ["version", "promoted"])
    return out(str(result["version"]), bool(result["promoted"]))
