"""KFP component: `extract` — dataset folder (imported artifact) → frame store (Dataset)."""
from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def extract(
    footage: Input[Dataset],
    store: Output[Dataset],
    report: Output[Markdown],
    params: str = "",
    overrides: list = [],
):
    """Decode the dataset under `footage` (benchmark layout, labels in testing/) into `store`."""
    import yaml

    from pseudovad import config
    from pseudovad.stages import extract as stage

    cfg = config.load(None, [str(o) for o in overrides], extra=yaml.safe_load(params) or {})
    summary = stage.run(cfg, root=footage.path, store=store.path, progress=False)
    store.metadata.update({"videos": summary["videos"], "frames": summary["frames"],
                           "size": list(cfg.data.size), "channels": cfg.data.channels})
    with open(report.path, "w") as f:
        f.write(f"## extract\n\n```yaml\n{yaml.safe_dump(summary, sort_keys=False)}```\n")
