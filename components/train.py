"""KFP component: `train` — frame store → model.pt (Model), final losses (Metrics), history."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.image import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def train(
    model: Output[Model],
    metrics: Output[Metrics],
    history: Output[Artifact],
    params: str = "",
    overrides: list = [],
    method: str = "ltgpa",
    pseudo_kind: str = "learned",
    lam: float = 0.1,
    p: float = 0.5,
    sigma: float = 0.1,
    mask_ratio: float = 0.75,
    epochs: int = 60,
    mlflow_uri: str = "",
    init: str = "",
    warm_start: bool = False,
    model_name: str = "",
    checkpoint_dir: str = "",
    run_id: str = "",
    store: Input[Dataset] = None,
    store_dir: str = "",
    tuned: Input[Artifact] = None,
):
    """Train on the frame store `store` (an artifact) or at `store_dir` (a mounted volume).

    Checkpoints go to `checkpoint_dir/<run_id>/train`, on a volume, so a retried pod resumes.

    `init` warm-starts from a model.pt or MLflow URI; `warm_start` from the registry's current
    champion of `model_name` (default pseudovad-<method>) when `init` is empty (from scratch
    while there is no champion yet).
    Precedence of settings: `params` (params.yaml text) < the typed parameters < the tuned best
    params (when a tune step ran) < `overrides` (key=value strings).
    """
    import json
    import os
    import shutil
    from pathlib import Path

    import yaml

    from pseudovad import config
    from pseudovad.models.io import read_model_file
    from pseudovad.stages import retrain
    from pseudovad.stages import train as stage
    from pseudovad.training import search_space

    typed = {"model": {"method": method},
             "pseudo": {"kind": pseudo_kind, "lam": lam, "p": p, "sigma": sigma, "mask_ratio": mask_ratio},
             "train": {"epochs": epochs}}
    if mlflow_uri:
        typed["tracking"] = {"uri": mlflow_uri}
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri   # also for MLflow calls made without the config
    if model_name:
        typed["registry"] = {"model_name": model_name}
    tree = config.deep_merge(yaml.safe_load(params) or {}, typed)
    if tuned is not None:   # the searched keys only: the rest of tune's params is its own base
        best = json.loads(Path(tuned.path, "metrics.json").read_text())["best_config"]
        tree = search_space.apply(tree, best)
    cfg = config.load(None, [str(o) for o in overrides], extra=tree)
    if init:
        cfg.train.init = init
    elif warm_start:        # the champion's pinned version; none yet: from scratch
        champ = retrain.champion(cfg)
        cfg.train.init = champ["uri"] if champ else None

    work = Path(checkpoint_dir, run_id or "run", "train") if checkpoint_dir else Path(model.path + ".work")
    summary = stage.run(cfg, store=store_dir or store.path, out=work, progress=False)

    shutil.copyfile(work / "model.pt", model.path)
    meta = read_model_file(model.path)["meta"]
    model.metadata.update({k: meta[k] for k in ("method", "size", "channels", "clip_len", "scored_index",
                                                  "frame_step", "value_range", "train_fingerprint") if k in meta})
    model.metadata["framework"] = "pytorch"
    for k, v in summary.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics.log_metric(k, v)
    Path(history.path).mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", "history.jsonl"):
        shutil.copyfile(work / name, Path(history.path, name))
    Path(history.path, "params.yaml").write_text(config.dump(cfg))
    history.metadata["summary"] = json.loads((work / "metrics.json").read_text())
    shutil.rmtree(work)  # the model is out; a finished run's checkpoints only fill the volume
