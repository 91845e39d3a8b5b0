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
) -> NamedTuple("RegisterOutputs", [("version", str), ("promoted", bool)]):
    """Register the model as a new version (alias `challenger`); `champion` moves only if it
    beats the current champion by `min_delta` micro AUC on the same evaluation set."""
    import os
    from collections import namedtuple
    from pathlib import Path

    import yaml

    from pseudovad import config
    from pseudovad.stages import register as stage

    typed = {"registry": {"min_delta": min_delta}}
    if model_name:
        typed["registry"]["model_name"] = model_name
    if mlflow_uri:
        typed["tracking"] = {"uri": mlflow_uri}
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri   # also for MLflow calls made without the config
    cfg = config.load(None, [str(o) for o in overrides],
                      extra=config.deep_merge(yaml.safe_load(params) or {}, typed))
    result = stage.run(cfg, model=model.path, metrics=str(Path(evaluation.path, "metrics.json")),
                       out=decision.path)
    decision.metadata.update({k: result[k] for k in ("model_name", "version", "model_uri", "promoted",
                                                     "champion_after", "reason")})
    Path(report.path).write_text(f"## register: {result['model_uri']}\n\n{result['reason']}\n\n"
                                 f"```yaml\n{yaml.safe_dump(result, sort_keys=False)}```\n")
    out = namedtuple("RegisterOutputs", ["version", "promoted"])
    return out(str(result["version"]), bool(result["promoted"]))
