"""`pseudovad <stage>`: one entry point, a subcommand per stage.

The CLI only parses arguments and calls `pseudovad.stages.<stage>.main(cfg, args)`. Problems the
user can fix (`PseudovadError`) are printed as one line on stderr with exit code 2.

Start-up is part of the interface: `pseudovad --help` imports no stage, and a command reads and
validates its params (`-P`, `-p`, and `--device`, `--threads` for the stages that run a model)
before it imports its stage, so a bad
key is refused before torch, MLflow or Ray are loaded. Only the chosen stage's module is imported
(for its arguments and its work), and each library module imports its heavy dependencies where
they are used (tests/test_startup.py checks `sys.modules`).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from pseudovad import config as config_mod
from pseudovad.errors import ConfigError, PseudovadError

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


# The stages that run a model: only they take --device and --threads.
COMPUTE = ("train", "evaluate", "score", "tune", "retrain")


def _common() -> argparse.ArgumentParser:
    """Options every stage takes: the params file and overrides."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-P", "--params", default=argparse.SUPPRESS,
                   help="params file (default: params.yaml in the current folder)")
    p.add_argument("-p", "--set", action="append", default=argparse.SUPPRESS, metavar="KEY=VALUE",
                   help="override a params key, e.g. -p pseudo.p=0.25 (repeatable)")
    return p


def _compute() -> argparse.ArgumentParser:
    """Options of the stages that run a model (`COMPUTE`)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=argparse.SUPPRESS,
                   help="compute device (overrides params `device`)")
    p.add_argument("--threads", type=int, default=argparse.SUPPRESS, metavar="N",
                   help="CPU threads for torch (default: OMP_NUM_THREADS if set, else one per core)")
    return p


def _parents(stage: str) -> list[argparse.ArgumentParser]:
    return [_common(), _compute()] if stage in COMPUTE else [_common()]


class _Version(argparse.Action):
    """`--version`: the package version and the commit it was built from (git is asked only then)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from pseudovad import build

        commit = build.source_commit()
        print(f"pseudovad {build.version()}" + (f" (commit {commit})" if commit else ""))
        parser.exit()


def _stage_module(name: str) -> ModuleType | None:
    """pseudovad.stages.<name>, or None where this install leaves the stage out."""
    try:
        return importlib.import_module(f"pseudovad.stages.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"pseudovad.stages.{name}":
            return None
        raise


def _root() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """`pseudovad` and its STAGE subcommands (both passes build their parser on it)."""
    parser = argparse.ArgumentParser(
        prog="pseudovad", parents=[_common()],
        description="Video anomaly detection from normal footage with pseudo anomalies (LTGPA, MAE-NCT).",
        epilog="Every STAGE takes -P FILE and -p KEY=VALUE; those that run a model (train, evaluate, score, "
               "tune, retrain) also --device and --threads. `pseudovad STAGE --help` lists a stage's options.")
    parser.add_argument("--version", action=_Version, help="print the version (and the git commit) and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser, parser.add_subparsers(dest="stage", metavar="STAGE", required=True)


def build_parser(stages: list[str] | None = None) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """The full parser, with the arguments of `stages` (default: all, which imports every stage's
    module); the other stages get a subcommand with the common options only."""
    parser, sub = _root()
    modules = {}
    for name, help_text in STAGES.items():
        if stages is None or name in stages:
            mod = _stage_module(name)
            if mod is None:
                continue
            sp = sub.add_parser(name, parents=_parents(name), help=help_text,
                                description=(mod.__doc__ or help_text).strip())
            mod.add_arguments(sp)
            modules[name] = mod
        else:
            sub.add_parser(name, parents=_parents(name), help=help_text)
    return parser, modules


def _first_pass(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The stage and the common options, without importing any stage (the stages' own
    arguments are left over). `pseudovad --help` is answered here."""
    parser, sub = _root()
    for name, help_text in STAGES.items():
        # the stage's own -h/--help is answered by the full parser, with the stage's arguments
        sub.add_parser(name, parents=_parents(name), help=help_text, add_help=False)
    return parser.parse_known_args(argv)


def _config(args: argparse.Namespace) -> config_mod.Config:
    """Params as the common options say (-P, -p, --device), validated."""
    overrides = list(getattr(args, "set", []) or [])
    if getattr(args, "device", None):
        overrides.append(f"device={args.device}")
    return config_mod.load(getattr(args, "params", "params.yaml"), overrides)


def _common_values(args: argparse.Namespace) -> tuple:
    return tuple(getattr(args, k, None) for k in ("params", "set", "device", "threads"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    early, rest = _first_pass(argv)
    asks_help = any(a in ("-h", "--help") for a in rest)
    stage = early.stage
    try:
        cfg = None
        if not asks_help:
            threads = getattr(early, "threads", None)
            if threads is not None and threads < 1:
                raise ConfigError(f"--threads: must be ≥ 1, got {threads}")
            cfg = _config(early)            # before the stage (and torch, MLflow, Ray) is imported
        parser, modules = build_parser([stage])
        if stage not in modules:
            parser.error(f"stage {stage!r} is not part of this install")
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s")
        for noisy in ("urllib3", "botocore", "matplotlib", "PIL", "alembic", "numexpr"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        if _common_values(args) != _common_values(early):   # e.g. an abbreviated option only the full parser reads
            cfg = _config(args)
        if getattr(args, "threads", None) is not None:
            from pseudovad.device import set_threads

            set_threads(args.threads)
        return int(modules[stage].main(cfg, args) or 0)
    except PseudovadError as e:
        print(f"pseudovad {stage}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pseudovad {stage}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
