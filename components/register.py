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
    run_id: str = "",
) -> NamedTuple("RegisterOutputs", [("version", str), ("promoted", bool)]):
    """Register the model as a new version (alias `challenger`); `champion` moves only if it
    beats the current champion by `registry.min_delta` micro AUC on the same evaluation set. `run_id` (the
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
