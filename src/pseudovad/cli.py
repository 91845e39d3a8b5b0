"""`pseudovad <stage>`: one entry point, a subcommand per stage.

The CLI only parses arguments and calls `pseudovad.stages.<stage>.main(cfg, args)`. Problems the
user can fix (`PseudovadError`) are printed as one line on stderr with exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pseudovad import config as config_mod
from pseudovad.errors import PseudovadError

STAGES = {
    "synthesize": "write the synthetic default dataset (videos + frame labels)",
    "extract": "decode videos / frame folders into the frame store",
    "train": "train a model (LTGPA or MAE-NCT) from normal footage",
    "evaluate": "score the test videos: PSNR, frame-level AUC, plots",
    "register": "register the evaluated model in MLflow and run the promotion gate",
    "score": "score new footage with a model and flag anomalous segments",
    "tune": "search hyper-parameters with Ray Tune on a validation split",
    "ingest": "add new normal footage (local folder or S3) to the training store",
    "retrain": "ingest → train → evaluate → register, for scheduled retraining",
    "report": "print AUC tables (method × dataset) from metrics files",
}


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-P", "--params", default=argparse.SUPPRESS,
                   help="params file (default: params.yaml in the current folder)")
    p.add_argument("-p", "--set", action="append", default=argparse.SUPPRESS, metavar="KEY=VALUE",
                   help="override a params key, e.g. -p pseudo.p=0.25 (repeatable)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=argparse.SUPPRESS,
                   help="compute device (overrides params `device`)")
    p.add_argument("--threads", type=int, default=argparse.SUPPRESS, metavar="N",
                   help="CPU threads for torch (default: OMP_NUM_THREADS if set, else one per core)")
    return p


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="pseudovad", parents=[common],
        description="Video anomaly detection from normal footage with pseudo anomalies (LTGPA, MAE-NCT).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    modules = {}
    for name, help_text in STAGES.items():
        try:
            mod = importlib.import_module(f"pseudovad.stages.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"pseudovad.stages.{name}":
                continue
            raise
        sp = sub.add_parser(name, parents=[common], help=help_text, description=(mod.__doc__ or help_text).strip())
        mod.add_arguments(sp)
        modules[name] = mod
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("urllib3", "botocore", "matplotlib", "PIL", "alembic", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if getattr(args, "threads", None) is not None:
            from pseudovad.device import set_threads

            set_threads(args.threads)
        overrides = list(getattr(args, "set", []) or [])
        if getattr(args, "device", None):
            overrides.append(f"device={args.device}")
        cfg = config_mod.load(getattr(args, "params", "params.yaml"), overrides)
        return int(modules[args.stage].main(cfg, args) or 0)
    except PseudovadError as e:
        print(f"pseudovad {args.stage}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pseudovad {args.stage}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
