"""`pseudovad-kfp` (or `python -m pipelines`): compile, submit, schedule and locally run the pipelines.

  pseudovad-kfp compile training -o training.yaml --image REG/pseudovad:<git-sha>   (docker/build.sh prints it)
  pseudovad-kfp run training -a dataset_uri=s3://bucket/ped2 -a mlflow_uri=http://mlflow:5000
  pseudovad-kfp schedule retrain --cron "0 0 3 * * *" -a source=s3://cams/footage/ ...
  pseudovad-kfp local training -a dataset_uri=data/synthetic -a mlflow_uri=http://127.0.0.1:5000 -P params.yaml

Pipeline arguments are `-a NAME=VALUE` (VALUE read as YAML: numbers, true/false, lists, dicts)
and are checked before anything is compiled or sent: names first, then types, then the settings
they make with the params file. `-P FILE` passes a params.yaml as the `params` argument. The
arguments become the compiled pipeline's defaults too, so the pipeline file itself records what
was set (`pseudovad-kfp compile -P FILE -a …` for the KFP UI). The KFP endpoint comes from --host or
$KFP_HOST (or kfp's own $KF_PIPELINES_ENDPOINT); the token from --token, $KFP_TOKEN, or the
projected service-account token file named by $KF_PIPELINES_SA_TOKEN_PATH (in-cluster).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import yaml

from pseudovad.errors import ConfigError, PseudovadError

PIPELINES = {
    "training": ("pipelines.training", "training_pipeline"),
    "retrain": ("pipelines.retrain", "retrain_pipeline"),
}


def load_pipeline(name: str, image: str | None = None, cuda_image: str | None = None, allow_drift: bool = False):
    """Import a pipeline; image overrides and the drift guard's opt-out must be in the environment
    before `components` and `pipelines` load (KFP builds the graph when the module is imported)."""
    from pseudovad import build

    if image:
        os.environ["PSEUDOVAD_IMAGE"] = image
    if cuda_image:
        os.environ["PSEUDOVAD_CUDA_IMAGE"] = cuda_image
    if allow_drift:
        os.environ[build.ENV_ALLOW_DRIFT] = "1"
    module, attr = PIPELINES[name]
    return getattr(importlib.import_module(module), attr)


def baked_image(a) -> str:
    """The images a compiled pipeline names, refused when nobody chose one: the default tag is
    this checkout's commit under the project's registry, which no build has pushed."""
    from components import image
    from pseudovad import build

    if not (a.image or os.environ.get("PSEUDOVAD_IMAGE") or a.allow_default_image):
        raise ConfigError(f"no image for the steps: pass --image REGISTRY/pseudovad:{build.image_tag()} (what "
                          "`docker/build.sh --push` printed) or set PSEUDOVAD_IMAGE; --allow-default-image uses "
                          f"{image.DEFAULT_IMAGE}, which this checkout never pushed")
    guard = ("off (--allow-image-drift)" if os.environ.get(build.ENV_ALLOW_DRIFT)
             else f"steps check they run pseudovad {build.identity()}")
    return f"image {image.IMAGE}, train/tune {image.CUDA_IMAGE}; drift guard: {guard}"


def pipeline_inputs(pipeline) -> dict[str, Any]:
    return dict(pipeline.component_spec.inputs or {})


def parse_arguments(pipeline, assignments: list[str], params_file: str | None = None,
                    require: bool = True) -> dict[str, Any]:
    """`NAME=VALUE` strings (and `-P FILE`) → typed pipeline arguments, checked in this order:
    every name (an unknown one is refused, listing the known), every value's type, the params
    file, the settings each step would resolve (`check_settings`), then the required ones."""
    inputs = pipeline_inputs(pipeline)
    pairs = []
    for a in assignments:
        name, sep, raw = a.partition("=")
        name = name.strip()
        if not sep:
            raise ConfigError(f"argument {a!r}: expected NAME=VALUE")
        if name not in inputs:
            raise ConfigError(f"argument {name!r}: not a parameter of {pipeline.name} "
                              f"(known: {', '.join(sorted(inputs))})")
        pairs.append((name, raw))
    args: dict[str, Any] = {name: _typed(name, inputs[name].type, raw) for name, raw in pairs}
    if params_file:
        from pseudovad.config import read_text_file

        path = Path(params_file)
        if not path.is_file() and not path.is_dir():
            raise ConfigError(f"{path}: params file not found")
        args["params"] = read_text_file(path, "params file")
    check_settings(args, params_file)
    if require:
        missing = [n for n, spec in inputs.items() if n not in args and spec.default is None and not spec.optional]
        if missing:
            raise ConfigError(f"{pipeline.name}: missing required argument(s) {', '.join(missing)} (pass -a NAME=VALUE)")
        if "dataset_uri" in inputs and not args.get("dataset_uri") and not args.get("dvc_remote"):
            raise ConfigError(f"{pipeline.name}: give dataset_uri (a dataset to import) or dvc_remote and repo_url "
                              "(the project's DVC remote and git repository)")
        if args.get("dvc_remote") and "repo_url" in inputs and not args.get("repo_url"):
            raise ConfigError(f"{pipeline.name}: dvc_remote needs repo_url (the project's git repository, whose "
                              "dvc.lock names the data)")
    return args


def check_settings(args: dict[str, Any], params_file: str | None = None):
    """The settings the steps will resolve from these arguments (`kubeflow.from_layers`), so a bad
    params file or value is refused here, in one line, not in a pod: the params (naming the file),
    then each typed parameter set, then `overrides`. Returns the Config."""
    from pseudovad import config as config_mod
    from pseudovad import kubeflow

    text, source = args.get("params", ""), params_file or "argument params"
    tree = config_mod.parse_yaml(text, source) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level (a params.yaml)")
    try:
        config_mod.from_dict(tree)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    names = {key: name for name, key in kubeflow.PIPELINE_PARAMS.items()}
    typed = kubeflow.typed_values(args)
    for key, value in typed.items():
        try:
            kubeflow.from_layers(text, {key: value})
        except ConfigError as e:
            raise ConfigError(f"argument {names[key]}: {e}") from None
    try:
        return kubeflow.from_layers(text, typed, args.get("overrides", ()))
    except ConfigError as e:
        raise ConfigError(f"argument overrides: {e}") from None


def settings_line(args: dict[str, Any], params_file: str | None = None) -> str:
    """Where a run's settings come from, in one line: the params file, and the typed parameters set."""
    from pseudovad import kubeflow

    source = params_file or ("the `params` argument" if args.get("params") else "the code defaults (no -P)")
    from pipelines.parameters import shown

    typed = kubeflow.parameters_set(args)
    set_ = ", ".join(f"{k}={shown(v)}" for k, v in typed.items()) or "none"
    return f"settings: {source}; typed parameters set: {set_}"


def _typed(name: str, kfp_type: str, raw: str) -> Any:
    from pseudovad import kubeflow

    key = kubeflow.PIPELINE_PARAMS.get(name)
    if key is not None and kubeflow.TYPED[key][1] is bool:      # a string parameter: "true" / "false"
        value = yaml.safe_load(raw) if raw.strip() else None
        if not isinstance(value, bool):
            raise ConfigError(f"argument {name}: expected true or false, got {raw!r}")
        return str(value).lower()
    if kfp_type == "String":
        return raw
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"argument {name}: {raw!r} is not valid YAML") from None
    expected = {"Integer": int, "Float": (int, float), "Boolean": bool, "List": list, "Dict": dict}.get(kfp_type)
    if expected is not None and (not isinstance(value, expected) or (kfp_type in ("Integer", "Float")
                                                                      and isinstance(value, bool))):
        raise ConfigError(f"argument {name}: expected {kfp_type.lower()}, got {raw!r}")
    return float(value) if kfp_type == "Float" else value


def compile_pipeline(pipeline, out: str | Path, arguments: dict[str, Any] | None = None) -> Path:
    """Compile to IR YAML; `arguments` become the parameters' defaults there, so the file records
    what was set. kfp 2.17 writes every default into a comment header too, where a multi-line
    one (a params file's text) breaks the YAML: such defaults are set in the IR afterwards."""
    from kfp import compiler

    arguments = arguments or {}
    multiline = {k: v for k, v in arguments.items() if isinstance(v, str) and "\n" in v}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, str(out),
                                pipeline_parameters={k: v for k, v in arguments.items() if k not in multiline} or None)
    if multiline:
        docs = list(yaml.safe_load_all(out.read_text()))
        for name, value in multiline.items():
            docs[0]["root"]["inputDefinitions"]["parameters"][name]["defaultValue"] = value
        header = f"# PIPELINE DEFINITION\n# Name: {pipeline.name}\n# Compiled with: {', '.join(sorted(arguments))}\n"
        out.write_text(header + yaml.safe_dump_all(docs, sort_keys=False))
    return out


def resolve_host(host: str | None) -> str:
    host = host or os.environ.get("KFP_HOST") or os.environ.get("KF_PIPELINES_ENDPOINT")
    if not host:
        raise ConfigError("KFP endpoint: pass --host or set KFP_HOST (e.g. http://localhost:8080 after "
                          "`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`)")
    return host


def client(host: str, token: str | None, namespace: str | None):
    """kfp.Client for `host`, the token from the flag, then the environment; never printed."""
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials

    token = token or os.environ.get("KFP_TOKEN")
    kwargs: dict[str, Any] = {"host": host}
    if namespace:
        kwargs["namespace"] = namespace
    if token:
        kwargs["existing_token"] = token
    elif os.environ.get("KF_PIPELINES_SA_TOKEN_PATH"):
        path = os.environ["KF_PIPELINES_SA_TOKEN_PATH"]
        if not Path(path).is_file():
            raise ConfigError(f"{path}: KF_PIPELINES_SA_TOKEN_PATH names no file")
        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path)
    # Without a namespace the constructor already calls the API (healthz: 5 tries, a traceback
    # logged for each); the outcome is reported once, by api_errors.
    logging.disable(logging.CRITICAL)
    try:
        with api_errors(host), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="This client only works with", category=FutureWarning)
            return kfp.Client(**kwargs)
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def api_errors(host: str | None):
    """Unreachable endpoint, refused token, rejected request → one line, not a traceback."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as e:
        reason = " ".join(str(e.body or e.reason or "").split())[:300]
        raise PseudovadError(f"KFP API {host}: HTTP {e.status} {reason}") from None
    except TimeoutError:     # kfp.Client's healthz retries
        raise PseudovadError(f"KFP API {host}: no healthz answer after 5 tries (is it the API endpoint, "
                             "and is the token accepted?)") from None
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise PseudovadError(f"KFP API {host}: unreachable ({type(e).__name__})") from None


def cron(expr: str) -> str:
    """KFP schedules take 6 fields (seconds first); a standard 5-field cron gets second 0."""
    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ConfigError(f"--cron {expr!r}: expected 5 fields (min hour day month weekday) or 6 (with seconds first)")
    return " ".join(fields)


# ----------------------------------------------------------------------------------------------

def cmd_compile(a) -> int:
    pipeline = load_pipeline(a.pipeline, a.image, a.cuda_image, a.allow_image_drift)
    args = parse_arguments(pipeline, a.arg, a.params, require=False)
    baked = baked_image(a)
    out = compile_pipeline(pipeline, a.output or f"{a.pipeline}.yaml", args)
    print(f"compiled {pipeline.name} → {out}: {baked}")
    if args:
        print(settings_line(args, a.params))
    return 0


def _package(a, pipeline, tmp: str, args: dict[str, Any]) -> str:
    path = compile_pipeline(pipeline, Path(tmp) / f"{pipeline.name}.yaml", args)   # the default run name
    if a.no_cache:
        without_cache(path)
    return str(path)


def without_cache(path: Path) -> None:
    """Turn caching off for every task of a compiled pipeline. kfp.Client's `enable_caching=False`
    only reaches the root DAG's tasks, not those inside dsl.If / dsl.Else branches."""
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = docs[0]
    dags = [spec["root"], *spec.get("components", {}).values()]
    for dag in dags:
        for task in dag.get("dag", {}).get("tasks", {}).values():
            task["cachingOptions"] = {}
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def cmd_run(a) -> int:
    pipeline = load_pipeline(a.pipeline, a.image, a.cuda_image, a.allow_image_drift)
    args = parse_arguments(pipeline, a.arg, a.params)
    baked = baked_image(a)
    host = resolve_host(a.host)
    c = client(host, a.token, a.namespace)
    with tempfile.TemporaryDirectory() as tmp, api_errors(host):
        result = c.create_run_from_pipeline_package(
            _package(a, pipeline, tmp, args), arguments=args, run_name=a.run_name,
            experiment_name=a.experiment, namespace=a.namespace, pipeline_root=a.pipeline_root,
            enable_caching=False if a.no_cache else None, service_account=a.service_account)
    print(f"submitted {pipeline.name}: run {result.run_id} in experiment {a.experiment}; {baked}")
    print(settings_line(args, a.params))
    if a.wait:
        try:
            with api_errors(host):
                done = result.wait_for_run_completion(timeout=a.wait)
        except TimeoutError:
            print(f"run {result.run_id}: still running after {a.wait}s (it goes on; see the KFP UI)")
            return 1
        state = getattr(done, "state", None)
        print(f"run {result.run_id}: {state}")
        return 0 if str(state).upper() == "SUCCEEDED" else 1
    return 0


def cmd_schedule(a) -> int:
    pipeline = load_pipeline(a.pipeline, a.image, a.cuda_image, a.allow_image_drift)
    args = parse_arguments(pipeline, a.arg, a.params)
    baked = baked_image(a)
    schedule = cron(a.cron)
    host = resolve_host(a.host)
    c = client(host, a.token, a.namespace)
    with tempfile.TemporaryDirectory() as tmp, api_errors(host):
        experiment = c.create_experiment(a.experiment, namespace=a.namespace)
        job = c.create_recurring_run(
            experiment_id=experiment.experiment_id, job_name=a.name or f"{pipeline.name}-schedule",
            cron_expression=schedule, max_concurrency=a.max_concurrency, no_catchup=not a.catchup,
            params=args, pipeline_package_path=_package(a, pipeline, tmp, args), pipeline_root=a.pipeline_root,
            enable_caching=False if a.no_cache else None, service_account=a.service_account)
    print(f"scheduled {pipeline.name} '{schedule}': recurring run {job.recurring_run_id} in experiment "
          f"{a.experiment}; {baked}")
    print(settings_line(args, a.params))
    return 0


def cmd_local(a) -> int:
    from kfp import local

    pipeline = load_pipeline(a.pipeline)
    args = parse_arguments(pipeline, a.arg, a.params)
    root = Path(a.root).resolve()
    inputs = pipeline_inputs(pipeline)
    # a workstation has no checkpoint volume: keep checkpoints beside the outputs
    if "checkpoint_dir" in inputs and "checkpoint_dir" not in args:
        args["checkpoint_dir"] = str(root / "checkpoints")
    for key in ("dataset_uri", "source", "store_dir", "repo_url"):
        value = args.get(key)
        if isinstance(value, str) and value and "://" not in value:
            args[key] = str(Path(value).resolve())
    print(settings_line(args, a.params))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root / "outputs"),
               enable_caching=a.cache)
    with warnings.catch_warnings():
        # the project image name has no "python" in it; locally the current interpreter runs the steps
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        pipeline(**args)
    print(f"local run of {pipeline.name} finished; outputs under {root / 'outputs'}")
    return 0


def settings_help() -> str:
    """The rule and the typed parameters, for `--help`: from `kubeflow.TYPED` and the config's defaults."""
    import textwrap

    from pipelines.parameters import RULE, code_default, shown
    from pseudovad.kubeflow import TYPED

    rule = textwrap.fill(f"{RULE} Above the typed parameters: the tuned values (run_tune), then `overrides`.", 100)
    width = max(len(name) for name, _, _ in TYPED.values())
    lines = [f"  {name:<{width}}  {key} (code default {shown(code_default(key))})" for key, (name, _, _) in TYPED.items()]
    return "\n".join(["Settings:", rule, "", "Typed parameters, the params key each sets:", *lines, "",
                      "Every parameter of a pipeline, with its meaning: pseudovad-kfp parameters PIPELINE"])


def cmd_parameters(a) -> int:
    from pipelines import parameters

    pipeline = load_pipeline(a.pipeline)
    print(parameters.table(pipeline) if a.markdown else parameters.listing(pipeline), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pseudovad-kfp", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join([*__doc__.split("\n\n")[1:], settings_help()]))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def pipeline_arg(p):
        p.add_argument("pipeline", choices=sorted(PIPELINES), help="which pipeline")

    def images(p):
        p.add_argument("--image", help="CPU image for the steps, e.g. REG/pseudovad:<git-sha> from docker/build.sh "
                                       "(or $PSEUDOVAD_IMAGE); required unless --allow-default-image")
        p.add_argument("--cuda-image", help="CUDA image for train/tune (default: IMAGE + '-cuda', $PSEUDOVAD_CUDA_IMAGE)")
        p.add_argument("--allow-default-image", action="store_true",
                       help="compile with components.image.DEFAULT_IMAGE (this commit's tag in the project registry)")
        p.add_argument("--allow-image-drift", action="store_true",
                       help="steps skip checking that the image holds the pseudovad version/commit compiled from")

    def arguments(p):
        p.add_argument("-a", "--arg", action="append", default=[], metavar="NAME=VALUE",
                       help="pipeline argument (repeatable); a typed one changes its params key, one left "
                            "out does not; `pseudovad-kfp parameters PIPELINE` lists them")
        p.add_argument("-P", "--params", metavar="FILE", help="params.yaml to pass as the `params` argument")

    def connection(p):
        p.add_argument("--host", help="KFP API endpoint (default: $KFP_HOST)")
        p.add_argument("--token", help="bearer token (default: $KFP_TOKEN, else $KF_PIPELINES_SA_TOKEN_PATH)")
        p.add_argument("--namespace", help="Kubeflow profile namespace (multi-user clusters)")
        p.add_argument("--experiment", default="pseudovad", help="KFP experiment name (default: pseudovad)")
        p.add_argument("--pipeline-root", help="artifact root, e.g. s3://bucket/kfp (default: the cluster's)")
        p.add_argument("--service-account", help="Kubernetes service account for the run's pods")
        p.add_argument("--no-cache", action="store_true", help="disable caching for every step of this run")

    p = sub.add_parser("compile", help="compile a pipeline to IR YAML")
    pipeline_arg(p)
    images(p)
    arguments(p)
    p.add_argument("-o", "--output", help="output file (default: <pipeline>.yaml)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="submit one run to a KFP cluster")
    pipeline_arg(p)
    images(p)
    arguments(p)
    connection(p)
    p.add_argument("--run-name", help="run name shown in the UI")
    p.add_argument("--wait", type=int, metavar="SECONDS", help="wait for the run to finish; exit 1 unless it succeeded")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("schedule", help="create a recurring run (cron) on a KFP cluster")
    pipeline_arg(p)
    images(p)
    arguments(p)
    connection(p)
    p.add_argument("--cron", required=True, help='cron expression: "0 3 * * *" (5 fields) or "0 0 3 * * *" (KFP, seconds first)')
    p.add_argument("--name", help="recurring run name (default: <pipeline name>-schedule)")
    p.add_argument("--max-concurrency", type=int, default=1, help="runs allowed at once (default: 1)")
    p.add_argument("--catchup", action="store_true", help="backfill missed intervals after a pause (default: no)")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("parameters", help="list a pipeline's parameters: default, meaning, the params key each sets")
    pipeline_arg(p)
    p.add_argument("--markdown", action="store_true", help="as a Markdown table (docs/deploy/parameters.md)")
    p.set_defaults(func=cmd_parameters)

    p = sub.add_parser("local", help="run a pipeline on this machine with kfp.local (SubprocessRunner)")
    pipeline_arg(p)
    arguments(p)
    p.add_argument("--root", default="runs/kfp", help="local pipeline root (default: runs/kfp)")
    p.add_argument("--cache", action="store_true", help="reuse cached step outputs from earlier local runs")
    p.set_defaults(func=cmd_local)
    return parser


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        return int(a.func(a) or 0)
    except PseudovadError as e:
        print(f"pseudovad-kfp {a.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
