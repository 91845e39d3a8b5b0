"""`synthesize`: write the synthetic default dataset (videos + frame labels)."""
from __future__ import annotations

from pathlib import Path

from pseudovad.config import Config
from pseudovad.data.synthetic import generate
from pseudovad.files import staged_outputs


def run(cfg: Config, out: str | Path | None = None) -> dict:
    out = Path(out or cfg.synthetic.out)
    # swapped in whole; its parent (data/) is claimed like extract's and ingest's store
    with staged_outputs(out.parent, f"synthesize into {out}") as stage:
        summary = generate(cfg.synthetic, stage / out.name)
    summary["out"] = str(out)
    return summary


def add_arguments(p) -> None:
    p.add_argument("--out", help="dataset root to write (default: synthetic.out)")


def main(cfg: Config, args) -> int:
    s = run(cfg, args.out)
    print(f"synthesize: {s['training']} training and {s['testing']} test videos in {s['out']} "
          f"({s['anomalous_frames']}/{s['test_frames']} test frames anomalous)")
    return 0


