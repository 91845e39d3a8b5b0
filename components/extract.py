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
    from pathlib import Path

    from pseudovad import kubeflow
    from pseudovad.stages import extract as stage

    cfg = kubeflow.step_config(locals())
    summary = stage.run(cfg, root=footage.path, store=store.path, progress=False)
    store.metadata.update({"videos": summary["videos"], "frames": summary["frames"],
                           "size": list(cfg.data.size), "channels": cfg.data.channels})
    Path(report.path).write_text(kubeflow.markdown("extract", data=summary))
