"""`synthesize`: write the synthetic default dataset (videos + frame labels)."""
from __future__ import annotations

from pathlib import Path

from pseudovad.config import Config
from pseudovad.data.synthetic import generate
from pseudovad.files import atomic_dir


def run(cfg: Config, out: str | Path | None = None) -> dict:
    out = Path(out or cfg.synthetic.out)
    with atomic_dir(out) as tmp:
        summary = generate(cfg.synthetic, tmp)
    summary["out"] = str(out)
    return summary


def add_arguments(p) -> None:
    p.add_argument("--out", help="dataset root to write (default: synthetic.out)")


def main(cfg: Config, args) -> int:
    s = run(cfg, args.out)
    print(f"synthesize: {s['training']} training and {s['testing']} test videos in {s['out']} "
          f"({s['anomalous_frames']}/{s['test_frames']} test frames anomalous)")
    return 0


