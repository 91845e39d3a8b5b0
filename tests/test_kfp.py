"""Kubeflow: the compiled pipelines ask Kubernetes for what the steps need (GPU, CPU/memory,
retries, volumes, caching), the CLI submits and schedules them against a KFP API, the Docker
images build what the components name, and the very same pipelines run locally end to end."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from components import image
from pseudovad import results
from pipelines import cli, tasks
from pipelines.retrain import retrain_pipeline
from pipelines.training import training_pipeline
from pseudovad.kubeflow import TYPED, UNSET

ROOT = Path(__file__).resolve().parents[1]

# the typed parameters (pseudovad.kubeflow.TYPED) default to "unset" (tests/test_kfp_params.py
# checks each against the table); the others' defaults are written out here
TYPED_UNSET = {name: UNSET[kind] for name, kind, _ in TYPED.values()}
TRAINING_DEFAULTS = {
    "dataset_uri": "", "repo_url": "", "revision": "", "s3_secret": "pseudovad-s3", "git_secret": "pseudovad-git",
    "run_tune": False, "params": "", "overrides": [], "accelerator_type": "nvidia.com/gpu", "gpu_limit": 1,
    "gpu_node_selector": {}, "gpu_tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "checkpoint_pvc": "pseudovad-checkpoints", "checkpoint_dir": "/mnt/pseudovad-checkpoints",
    "mlflow_secret": "pseudovad-mlflow",
    **{n: TYPED_UNSET[n] for n in ("method", "pseudo_kind", "lam", "p", "sigma", "jumps", "patch_max_size",
                                   "patch_max_move", "patch_source", "pseudo_loss", "mask_ratio", "epochs",
                                   "tune_samples", "tune_gpus_per_trial", "min_delta", "model_name", "dvc_remote")},
}
RETRAINING_DEFAULTS = {
    "store_dir": "/mnt/pseudovad-data/store", "quarantine_dir": "/mnt/pseudovad-data/quarantine",
    "data_pvc": "pseudovad-data", "s3_secret": "pseudovad-s3", "repo_url": "", "revision": "",
    "git_secret": "pseudovad-git", "params": "", "overrides": [], "accelerator_type": "nvidia.com/gpu",
    "gpu_limit": 1, "gpu_node_selector": {}, "gpu_tolerations": TRAINING_DEFAULTS["gpu_tolerations"],
    "checkpoint_dir": "/mnt/pseudovad-data/checkpoints", "mlflow_secret": "pseudovad-mlflow",
    **{n: TYPED_UNSET[n] for n in ("method", "pseudo_kind", "lam", "p", "sigma", "jumps", "patch_max_size",
                                   "patch_max_move", "patch_source", "pseudo_loss", "mask_ratio", "epochs",
                                   "min_delta", "model_name", "warm_start", "dvc_remote")},
}


class IR:
    """A compiled pipeline: the pipeline spec and its Kubernetes platform spec, by step."""

    def __init__(self, path: Path):
        docs = list(yaml.safe_load_all(path.read_text()))
        self.spec = docs[0]
        self.k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
        self.executors = self.spec["deploymentSpec"]["executors"]
        # every task at any depth (inside dsl.If / dsl.Else DAGs too), with the DAG holding it
        self.tasks: dict[str, tuple[dict, str]] = {}
        for dag_name, dag in [("root", self.spec["root"]), *self.spec["components"].items()]:
            for name, task in dag.get("dag", {}).get("tasks", {}).items():
                self.tasks[name] = (task, dag_name)

    def steps(self, stage: str) -> list[str]:
        """Task names of a stage: `train`, `train-2` (one per branch)."""
        return [t for t in self.tasks if re.fullmatch(rf"{stage}(-\d+)?", t)]

    def executor(self, task: str) -> str:
        comp = self.tasks[task][0]["componentRef"]["name"]
        return self.spec["components"][comp]["executorLabel"]

    def container(self, task: str) -> dict:
        return self.executors[self.executor(task)]["container"]


def compile_ir(pipeline, tmp_path: Path) -> IR:
    return IR(cli.compile_pipeline(pipeline, tmp_path / f"{pipeline.name}.yaml"))


@pytest.fixture(scope="module")
def training_ir(tmp_path_factory) -> IR:
    return compile_ir(training_pipeline, tmp_path_factory.mktemp("ir"))


@pytest.fixture(scope="module")
def retraining_ir(tmp_path_factory) -> IR:
    return compile_ir(retrain_pipeline, tmp_path_factory.mktemp("ir"))


def container_steps(ir: IR) -> list[str]:
    return [t for t in ir.tasks if "container" in ir.executors.get(_label(ir, t), {})]


def _label(ir: IR, task: str) -> str:
    comp = ir.spec["components"].get(ir.tasks[task][0]["componentRef"]["name"], {})
    return comp.get("executorLabel", "")


# ----------------------------------------------------------------------------------------------
# The compiled IR

def test_training_parameters_and_defaults(training_ir):
    params = training_ir.spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(TRAINING_DEFAULTS) | {"mlflow_uri"}
    assert "defaultValue" not in params["mlflow_uri"] and not params["mlflow_uri"].get("isOptional")
    for name, default in TRAINING_DEFAULTS.items():
        assert params[name]["defaultValue"] == default, name
    assert params["gpu_limit"]["parameterType"] == "NUMBER_INTEGER"
    assert params["run_tune"]["parameterType"] == "BOOLEAN"


def test_retraining_parameters_and_defaults(retraining_ir):
    params = retraining_ir.spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(RETRAINING_DEFAULTS) | {"source", "mlflow_uri"}
    assert "defaultValue" not in params["source"]
    for name, default in RETRAINING_DEFAULTS.items():
        assert params[name]["defaultValue"] == default, name


@pytest.mark.parametrize("stage", ["train", "tune"])
def test_gpu_steps_request_the_accelerator_from_parameters(training_ir, stage):
    steps = training_ir.steps(stage)
    assert steps, stage
    for step in steps:
        c = training_ir.container(step)
        acc = c["resources"]["accelerator"]
        assert acc["resourceType"] == "{{$.inputs.parameters['pipelinechannel--accelerator_type']}}"
        assert acc["resourceCount"] == "{{$.inputs.parameters['pipelinechannel--gpu_limit']}}"
        assert c["image"] == image.CUDA_IMAGE
        k8s = training_ir.k8s[training_ir.executor(step)]
        assert k8s["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith("gpu_node_selector")
        assert k8s["tolerations"][0]["tolerationJson"]["componentInputParameter"].endswith("gpu_tolerations")
        # the DAG around the step (a dsl.If branch) must receive the two parameters, or the
        # request cannot be resolved at run time (kfp 2.17 does not propagate them by itself)
        task, dag = training_ir.tasks[step]
        for name in ("accelerator_type", "gpu_limit"):
            assert f"pipelinechannel--{name}" in task["inputs"]["parameters"]
            assert f"pipelinechannel--{name}" in training_ir.spec["components"][dag]["inputDefinitions"]["parameters"]


def test_cpu_steps_ask_for_no_gpu_and_use_the_cpu_image(training_ir, retraining_ir):
    for ir in (training_ir, retraining_ir):
        for step in container_steps(ir):
            if re.fullmatch(r"(train|tune)(-\d+)?", step):
                continue
            c = ir.container(step)
            assert "accelerator" not in c.get("resources", {}), step
            assert c["image"] == image.IMAGE, step


def test_every_step_requests_and_limits_cpu_and_memory(training_ir, retraining_ir):
    for ir in (training_ir, retraining_ir):
        steps = container_steps(ir)
        assert len(steps) >= 4
        for step in steps:
            r = ir.container(step)["resources"]
            stage = re.sub(r"-\d+$", "", step)
            cpu, mem, cpu_max, mem_max = tasks.RESOURCES[stage]
            assert (r["resourceCpuRequest"], r["resourceMemoryRequest"]) == (cpu, mem), step
            assert (r["resourceCpuLimit"], r["resourceMemoryLimit"]) == (cpu_max, mem_max), step


def test_preemptible_steps_retry_with_backoff_and_register_does_not(training_ir, retraining_ir):
    for ir, retried in ((training_ir, ("extract", "tune", "train", "evaluate")),
                        (retraining_ir, ("ingest", "train", "evaluate"))):
        for stage in retried:
            for step in ir.steps(stage):
                policy = ir.tasks[step][0]["retryPolicy"]
                assert policy == {"maxRetryCount": tasks.RETRIES, "backoffDuration": tasks.BACKOFF,
                                  "backoffFactor": 2.0, "backoffMaxDuration": tasks.BACKOFF_MAX}, step
        for step in ir.steps("register"):
            assert "retryPolicy" not in ir.tasks[step][0]


def test_caching_extract_on_register_off_retraining_off(training_ir, retraining_ir):
    cache = lambda ir, step: ir.tasks[step][0].get("cachingOptions", {}).get("enableCache", False)  # noqa: E731
    imported, dvc = _extract_steps(training_ir)
    assert cache(training_ir, imported)
    assert not cache(training_ir, dvc)          # DVC is the cache; a branch name's commit moves
    assert all(cache(training_ir, s) for s in training_ir.steps("train") + training_ir.steps("tune"))
    assert len(training_ir.steps("register")) == 4     # tuned / untuned, for each way the frames come
    assert not any(cache(training_ir, s) for s in training_ir.steps("register"))
    steps = container_steps(retraining_ir)
    assert steps and not any(cache(retraining_ir, s) for s in steps)


def test_train_and_tune_resume_from_a_persistent_volume(training_ir):
    for step in training_ir.steps("train") + training_ir.steps("tune"):
        mounts = training_ir.k8s[training_ir.executor(step)]["pvcMount"]
        assert [(m["mountPath"], m["pvcNameParameter"]["componentInputParameter"]) for m in mounts] == \
            [(tasks.CHECKPOINT_MOUNT, "pipelinechannel--checkpoint_pvc")]
        params = training_ir.tasks[step][0]["inputs"]["parameters"]
        assert params["checkpoint_dir"]["componentInputParameter"].endswith("checkpoint_dir")
        # one folder per run: retries of this run share it, other runs do not
        assert params["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert TRAINING_DEFAULTS["checkpoint_dir"] == tasks.CHECKPOINT_MOUNT


def _extract_steps(ir: IR) -> tuple[str, str]:
    """(the extract step fed by the dataset importer, the one going through the DVC remote)."""
    steps = ir.steps("extract")
    assert len(steps) == 2
    imported = [s for s in steps if "importer" in ir.spec["components"][ir.tasks[s][1]]["dag"]["tasks"]]
    assert len(imported) == 1
    return imported[0], next(s for s in steps if s != imported[0])


def test_frames_come_from_the_dvc_remote_or_an_imported_dataset(training_ir):
    imported, dvc = _extract_steps(training_ir)
    conditions = {ir_dag: training_ir.spec["components"][ir_dag] for _, ir_dag in (training_ir.tasks[imported],
                                                                                    training_ir.tasks[dvc])}
    assert len(conditions) == 2
    task = training_ir.tasks[imported][0]
    assert task["inputs"]["artifacts"]["footage"]["taskOutputArtifact"]["producerTask"] == "importer"
    assert "repo_url" not in task["inputs"].get("parameters", {})
    task = training_ir.tasks[dvc][0]
    assert "footage" not in task["inputs"].get("artifacts", {})
    for name in ("repo_url", "revision", "dvc_remote"):
        assert task["inputs"]["parameters"][name]["componentInputParameter"].endswith(name)
    # credentials reach the DVC branch's step as environment from secrets, never as parameters
    envs = training_ir.k8s[training_ir.executor(dvc)]["secretAsEnv"]
    by_secret = {e["secretNameParameter"]["componentInputParameter"].split("--")[-1]: {k["envVar"] for k in e["keyToEnv"]}
                 for e in envs}
    assert by_secret == {"s3_secret": set(tasks.S3_SECRET_KEYS), "git_secret": {"GIT_USERNAME", "GIT_TOKEN"}}
    assert all(e["optional"] for e in envs)
    assert "secretAsEnv" not in training_ir.k8s.get(training_ir.executor(imported), {})
    conds = [t["triggerPolicy"]["condition"] for t, _ in training_ir.tasks.values() if "triggerPolicy" in t]
    assert any("dvc_remote" in c and '== ""' in c.replace("'", '"') for c in conds), conds


def test_tune_is_optional_and_feeds_train(training_ir):
    branches = [c for n, c in training_ir.spec["components"].items() if n.startswith("comp-condition-")
                and "dag" in c and any(re.fullmatch(r"tune(-\d+)?", t) for t in c["dag"]["tasks"])]
    assert len(branches) == 2                 # one per way the frames come
    for tuned in branches:
        (tu,) = [t for t in tuned["dag"]["tasks"] if t.startswith("tune")]
        (tr,) = [t for t in tuned["dag"]["tasks"] if t.startswith("train")]
        train_inputs = tuned["dag"]["tasks"][tr]["inputs"]["artifacts"]["tuned"]["taskOutputArtifact"]
        assert train_inputs == {"outputArtifactKey": "best", "producerTask": tu}
    conditions = [t["triggerPolicy"]["condition"] for t, _ in training_ir.tasks.values() if "triggerPolicy" in t]
    assert any("run_tune" in c and "== true" in c for c in conditions)
    assert any("run_tune" in c and "!" in c for c in conditions)


def test_retraining_trains_only_when_ingest_added_footage(retraining_ir):
    ingest_step = retraining_ir.tasks["ingest"][0]
    assert retraining_ir.k8s[retraining_ir.executor("ingest")]["secretAsEnv"][0]["secretNameParameter"] == \
        {"componentInputParameter": "s3_secret"}
    cond = [t for t, _ in retraining_ir.tasks.values() if "triggerPolicy" in t]
    assert len(cond) == 1 and "ingest-Output" in cond[0]["triggerPolicy"]["condition"]
    assert "== true" in cond[0]["triggerPolicy"]["condition"]
    assert ingest_step.get("cachingOptions", {}).get("enableCache") is not True
    for step in ("ingest", "train", "evaluate"):
        mounts = retraining_ir.k8s[retraining_ir.executor(step)]["pvcMount"]
        assert [m["mountPath"] for m in mounts] == [tasks.DATA_MOUNT], step
    train = retraining_ir.tasks["train"][0]["inputs"]["parameters"]
    assert train["warm_start"]["componentInputParameter"].endswith("warm_start")
    assert train["store_dir"]["componentInputParameter"].endswith("store_dir")


def test_steps_run_as_the_image_user_and_install_nothing(training_ir, retraining_ir):
    for ir in (training_ir, retraining_ir):
        for step in container_steps(ir):
            c = ir.container(step)
            assert "pip install" not in " ".join(c["command"] + c.get("args", [])), step   # offline clusters
            sc = ir.k8s[ir.executor(step)]["securityContext"]
            assert sc["runAsNonRoot"] is True and int(sc["runAsUser"]) == tasks.UID, step


def test_train_component_settings_precedence_and_tuned_values(tmp_path):
    """params < typed parameters < tune's best values < overrides; checkpoints gone afterwards."""
    import torch
    from kfp.dsl import Artifact, Dataset, Metrics, Model

    from components import train
    from pseudovad.stages import extract, synthesize
    from tests.conftest import tiny_cfg

    cfg = tiny_cfg(tmp_path)
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    (tuned / "metrics.json").write_text(json.dumps({"best_config": {"pseudo.lam": 0.37, "train.lr": 0.002}}))
    params = {**TINY_PARAMS, "pseudo": {"lam": 0.9, "p": 0.9}, "train": {"lr": 0.5, "max_steps": 2}}
    art = lambda cls, name: cls(uri=str(tmp_path / "out" / name))  # noqa: E731
    (tmp_path / "out").mkdir()
    model, metrics, history = art(Model, "model"), art(Metrics, "metrics"), art(Artifact, "history")
    train.python_func(model=model, metrics=metrics, history=history, params=yaml.safe_dump(params),
                      overrides=["train.lr=0.003"], lam=0.2, p=0.25, epochs=1,
                      checkpoint_dir=str(tmp_path / "ckpt"), run_id="run-7",
                      store=Dataset(uri=str(cfg.data.store)), tuned=Artifact(uri=str(tuned)))
    meta = torch.load(model.path, weights_only=True)["meta"]
    assert meta["config"]["pseudo"]["lam"] == 0.37      # tuned beats the typed parameter
    assert meta["config"]["pseudo"]["p"] == 0.25        # typed beats params
    assert meta["config"]["train"]["lr"] == 0.003       # overrides beat everything
    assert meta["config"]["data"]["size"] == [32, 32]   # params beat the defaults
    assert metrics.metadata["steps"] == 2 and model.metadata["method"] == "ltgpa"
    assert (Path(history.path) / "history.json").is_file() and (Path(history.path) / "provenance.json").is_file()
    assert not (tmp_path / "ckpt" / "run-7" / "train").exists()


# ----------------------------------------------------------------------------------------------
# The CLI

def test_cli_checks_arguments_before_anything_is_sent(tmp_path, capsys):
    p = training_pipeline
    args = cli.parse_arguments(p, ["dataset_uri=s3://b/ped2", "mlflow_uri=http://m:5000", "lam=0.25", "epochs=3",
                                   "run_tune=true", "gpu_node_selector={cloud.google.com/gke-accelerator: nvidia-l4}",
                                   "overrides=[train.lr=0.001]"])
    assert args["lam"] == 0.25 and args["epochs"] == 3 and args["run_tune"] is True
    assert args["gpu_node_selector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert args["overrides"] == ["train.lr=0.001"]
    assert cli.parse_arguments(p, ["dataset_uri=s3://b/d", "mlflow_uri=x", "model_name=123"])["model_name"] == "123"
    for bad, msg in ((["dataset_uri=d", "mlflow_uri=x", "lamda=1"], "'lamda': not a parameter"),
                     (["dataset_uri=d", "mlflow_uri=x", "epochs=1.5"], "epochs: expected integer"),
                     (["dataset_uri=d", "mlflow_uri=x", "run_tune=maybe"], "run_tune: expected boolean"),
                     (["dataset_uri=d"], "missing required argument(s) mlflow_uri"),
                     (["mlflow_uri=x"], "give dataset_uri (a dataset to import) or dvc_remote and repo_url"),
                     (["mlflow_uri=x", "dvc_remote=s3://b/dvc"], "dvc_remote needs repo_url")):
        assert cli.main(["run", "training", "--allow-default-image", "--host", "http://127.0.0.1:9", *sum((["-a", b] for b in bad), [])]) == 2
        assert msg in capsys.readouterr().err
    assert cli.main(["run", "training", "--allow-default-image", "-P", str(tmp_path / "nope.yaml"), "-a", "dataset_uri=d", "-a", "mlflow_uri=x",
                     "--host", "http://127.0.0.1:9"]) == 2
    assert "params file not found" in capsys.readouterr().err


def test_cron_takes_standard_and_kfp_forms():
    assert cli.cron("0 3 * * *") == "0 0 3 * * *"
    assert cli.cron("0 0 3 * * 1-5") == "0 0 3 * * 1-5"
    with pytest.raises(Exception, match="expected 5 fields"):
        cli.cron("daily")


def _kfp_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`pseudovad-kfp ARGS` in a fresh process (components read the image names when imported)."""
    exe = Path(sys.executable).with_name("pseudovad-kfp")
    base = {k: v for k, v in os.environ.items() if not k.startswith("PSEUDOVAD_")}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, env={**base, **(env or {})})


def test_console_script_compiles_with_an_image_override_and_the_commit_in_every_step(tmp_path):
    from pseudovad import build

    out = tmp_path / "training.yaml"
    r = _kfp_cli("compile", "training", "-o", str(out), "--image", "registry.local/pv:dev")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (f"compiled pseudovad-training → {out}: image registry.local/pv:dev, train/tune "
                                f"registry.local/pv:dev-cuda; drift guard: steps check they run pseudovad {build.identity()}")
    ir = IR(out)
    assert ir.container("extract")["image"] == "registry.local/pv:dev"
    assert ir.container("train")["image"] == "registry.local/pv:dev-cuda"
    commit = build.source_commit()
    assert commit and build.identity() == f"{build.version()}@{commit}"
    for step in ("extract", "tune", "train", "evaluate", "register"):
        env = {e["name"]: e["value"] for e in ir.container(step)["env"]}
        assert env["PSEUDOVAD_COMPILED_FROM"] == build.identity(), step
        assert env["PSEUDOVAD_KFP_PIPELINE"] == "pseudovad-training", step
        assert env["PSEUDOVAD_KFP_IMAGE"] == ir.container(step)["image"], step
        assert ir.k8s[ir.executor(step)]["podMetadata"]["labels"]["pseudovad.io/commit"] == commit, step
    r = _kfp_cli("compile", "training", "-o", str(out), "--image", "registry.local/pv:dev", "--allow-image-drift")
    assert r.returncode == 0 and "drift guard: off (--allow-image-drift)" in r.stdout
    assert "PSEUDOVAD_COMPILED_FROM" not in {e["name"] for e in IR(out).container("train")["env"]}


def test_compile_without_an_image_is_refused_in_one_line(tmp_path):
    out = tmp_path / "training.yaml"
    for command in (["compile", "training", "-o", str(out)],
                    ["run", "training", "-a", "dataset_uri=d", "-a", "mlflow_uri=m", "--host", "http://127.0.0.1:9"]):
        r = _kfp_cli(*command)
        assert r.returncode == 2 and not out.exists()
        assert r.stderr.strip().startswith(f"pseudovad-kfp {command[0]}: error: no image for the steps: pass --image")
        assert len(r.stderr.strip().splitlines()) == 1
    r = _kfp_cli("compile", "training", "-o", str(out), env={"PSEUDOVAD_IMAGE": "registry.local/pv:env"})
    assert r.returncode == 0 and IR(out).container("evaluate")["image"] == "registry.local/pv:env"
    r = _kfp_cli("compile", "retrain", "-o", str(out), "--allow-default-image")
    assert r.returncode == 0 and IR(out).container("ingest")["image"] == image.DEFAULT_IMAGE


def test_drift_guard_refuses_an_image_of_other_code(monkeypatch, tmp_path):
    """A step compiled from one version/commit refuses to run on an image holding another, in one
    line naming both, before it reads anything; compiled from this code, it runs."""
    from components import extract
    from pseudovad import build
    from pseudovad.errors import ConfigError

    here = build.identity()
    monkeypatch.setenv("PSEUDOVAD_COMPILED_FROM", "0.0.9@0123456789abcdef0123456789abcdef01234567")
    footage = SimpleNamespace(path=str(tmp_path / "no-such-dataset"))
    with pytest.raises(ConfigError) as e:
        extract.python_func(footage=footage, store=SimpleNamespace(path=str(tmp_path / "store"), metadata={}),
                            report=SimpleNamespace(path=str(tmp_path / "report.md")))
    msg = str(e.value)
    assert msg.startswith("image drift: the pipeline was compiled from pseudovad 0.0.9@0123456789abcdef")
    assert f"this image holds {here}" in msg and "\n" not in msg
    assert not (tmp_path / "store").exists()
    monkeypatch.setenv("PSEUDOVAD_COMPILED_FROM", here)
    build.check_compiled_from(os.environ["PSEUDOVAD_COMPILED_FROM"])       # same code: runs
    # in an image: its baked commit is what it holds, whatever checkout is around
    monkeypatch.setenv("PSEUDOVAD_GIT_COMMIT", "fedcba9876543210fedcba9876543210fedcba98")
    with pytest.raises(ConfigError, match=r"this image holds \S+@fedcba9876543210fedcba9876543210fedcba98;"):
        build.check_compiled_from(here)
    build.check_compiled_from("")                                           # --allow-image-drift


class FakeKFP:
    """Just enough of the KFP v2beta1 REST API to record what the client sends."""

    def __init__(self, state: str = "SUCCEEDED", status: int = 200):
        self.requests: list[dict] = []
        self.state, self.status = state, status      # what GET /runs/<id> says; the HTTP status of every reply
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                outer.requests.append({"method": self.command, "path": self.path, "body": body,
                                       "auth": self.headers.get("Authorization")})
                if self.path.startswith("/apis/v2beta1/experiments") and self.command == "GET":
                    reply = {}
                elif self.path.startswith("/apis/v2beta1/experiments"):
                    reply = {"experiment_id": "exp-1", "display_name": body["display_name"]}
                elif self.path.startswith("/apis/v2beta1/recurringruns"):
                    reply = {"recurring_run_id": "rr-1"}
                elif self.path.startswith("/apis/v2beta1/runs/"):
                    reply = {"run_id": "run-1", "state": outer.state}
                elif self.path.startswith("/apis/v2beta1/runs"):
                    reply = {"run_id": "run-1"}
                else:
                    reply = {}
                if outer.status != 200:
                    reply = {"error_message": "token refused", "code": 16}
                data = json.dumps(reply).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _reply

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def posted(self, prefix: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST" and r["path"].startswith(prefix)]


def test_run_submits_the_compiled_pipeline_with_arguments_and_token(tmp_path, monkeypatch, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  epochs: 2\n")
    monkeypatch.setenv("KFP_TOKEN", "tok-from-env")
    with FakeKFP() as api:
        monkeypatch.setenv("KFP_HOST", api.url)
        rc = cli.main(["run", "training", "--allow-default-image", "-P", str(params), "-a", "dataset_uri=s3://bucket/ped2",
                       "-a", "mlflow_uri=http://mlflow:5000", "-a", "lam=0.2", "--experiment", "ped2", "--no-cache"])
    assert rc == 0
    assert "run run-1" in capsys.readouterr().out
    (exp,) = api.posted("/apis/v2beta1/experiments")
    assert exp["body"]["display_name"] == "ped2"
    (run,) = api.posted("/apis/v2beta1/runs")
    body = run["body"]
    assert body["experiment_id"] == "exp-1"
    assert body["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "pseudovad-training"
    assert body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]
    assert body["runtime_config"]["parameters"] == {"params": "train:\n  epochs: 2\n", "dataset_uri": "s3://bucket/ped2",
                                                    "mlflow_uri": "http://mlflow:5000", "lam": 0.2}
    dags = body["pipeline_spec"]["pipeline_spec"]["components"].values()
    extracts = [t for c in dags for n, t in c.get("dag", {}).get("tasks", {}).items() if n.startswith("extract")]
    assert len(extracts) == 2 and all(t["cachingOptions"] == {} for t in extracts)   # --no-cache: caching off everywhere
    assert {r["auth"] for r in api.requests} == {"Bearer tok-from-env"}


def test_schedule_creates_a_cron_recurring_run(tmp_path, monkeypatch, capsys):
    token = tmp_path / "token"
    token.write_text("sa-token")
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    with FakeKFP() as api:
        rc = cli.main(["schedule", "retrain", "--allow-default-image", "--host", api.url, "--cron", "30 2 * * *", "--name", "nightly",
                       "-a", "source=s3://cams/footage/", "-a", "mlflow_uri=http://mlflow:5000"])
    assert rc == 0
    assert "recurring run rr-1" in capsys.readouterr().out
    (rr,) = api.posted("/apis/v2beta1/recurringruns")
    body = rr["body"]
    assert body["display_name"] == "nightly"
    assert body["trigger"]["cron_schedule"]["cron"] == "0 30 2 * * *"
    assert int(body["max_concurrency"]) == 1 and body["no_catchup"] is True
    assert body["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "pseudovad-retrain"
    assert body["runtime_config"]["parameters"] == {"source": "s3://cams/footage/", "mlflow_uri": "http://mlflow:5000"}
    assert {r["auth"] for r in api.requests} == {"Bearer sa-token"}


@pytest.mark.parametrize("state,rc", [("SUCCEEDED", 0), ("FAILED", 1)])
def test_run_wait_exits_with_the_run_outcome(state, rc, monkeypatch, capsys):
    monkeypatch.setenv("KFP_TOKEN", "t")
    with FakeKFP(state=state) as api:
        assert cli.main(["run", "training", "--allow-default-image", "--host", api.url, "--wait", "60", "-a", "dataset_uri=d",
                         "-a", "mlflow_uri=m"]) == rc
    assert f"run run-1: {state}" in capsys.readouterr().out
    assert any(r["method"] == "GET" and r["path"] == "/apis/v2beta1/runs/run-1" for r in api.requests)


def test_refused_token_and_unreachable_host_are_one_line_errors(monkeypatch, capsys):
    monkeypatch.setenv("KFP_TOKEN", "expired")
    with FakeKFP(status=401) as api:
        assert cli.main(["schedule", "retrain", "--allow-default-image", "--host", api.url, "--namespace", "team-a", "--cron", "0 3 * * *",
                         "-a", "source=s3://b/", "-a", "mlflow_uri=m"]) == 2
    err = capsys.readouterr().err
    assert f"KFP API {api.url}: HTTP 401" in err and len(err.strip().splitlines()) == 1
    assert "expired" not in err
    assert cli.main(["run", "training", "--allow-default-image", "--host", "http://127.0.0.1:9", "-a", "dataset_uri=d", "-a", "mlflow_uri=m"]) == 2
    err = capsys.readouterr().err
    assert "KFP API http://127.0.0.1:9: unreachable" in err and len(err.strip().splitlines()) == 1


def test_run_without_a_host_is_a_one_line_error(monkeypatch, capsys):
    for name in ("KFP_HOST", "KF_PIPELINES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["run", "training", "--allow-default-image", "-a", "dataset_uri=d", "-a", "mlflow_uri=m"]) == 2
    err = capsys.readouterr().err
    assert "--host" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------------------
# Docker images

DOCKERFILE = ROOT / "docker" / "Dockerfile"


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line.strip())
        if m:
            pins[re.sub(r"\[.*\]", "", m[1]).lower().replace("_", "-")] = m[2]
    return pins


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _arg_defaults() -> dict[str, set[str]]:
    """Every default each ARG gets in the Dockerfile (global and per stage)."""
    out: dict[str, set[str]] = {}
    for op, rest in _instructions(DOCKERFILE):
        if op == "ARG" and "=" in rest:
            k, _, v = rest.partition("=")
            out.setdefault(k, set()).add(v)
    return out


def test_image_names_come_from_one_place_tagged_by_commit():
    from pseudovad import build

    version = _pyproject()["project"]["version"]
    assert image.VERSION == version == build.version()
    assert _arg_defaults()["VERSION"] == {version}     # the labels of a plain `docker build`
    # the default tag is this checkout's, exactly as docker/build.sh tags the image it builds
    r = subprocess.run(["bash", str(ROOT / "docker" / "build.sh"), "--print-tag", "--allow-dirty"],
                       capture_output=True, text=True, check=True)
    assert image.DEFAULT_IMAGE == r.stdout.strip() == f"{image.REPOSITORY}:{build.image_tag()}"
    assert build.image_tag("0123456789abcdef0123456789abcdef01234567") == "0123456789ab"
    assert build.image_tag("0123456789abcdef0123456789abcdef01234567-dirty") == "0123456789ab-dirty"
    assert image.IMAGE == image.DEFAULT_IMAGE and image.CUDA_IMAGE == f"{image.IMAGE}-cuda"   # no override here


def test_one_dockerfile_for_both_flavours_with_labels_and_the_commit_baked_in():
    assert not (ROOT / "docker" / "Dockerfile.cuda").exists()
    ins = _instructions(DOCKERFILE)
    args = _arg_defaults()
    assert {"BASE_IMAGE", "FLAVOUR", "TORCH_INDEX", "TORCH_WHEEL", "GIT_COMMIT", "VERSION"} <= set(args)
    assert [rest.split()[0] for op, rest in ins if op == "FROM"] == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
    text = DOCKERFILE.read_text()
    for flavour, index in (("cpu", "https://download.pytorch.org/whl/cpu"), ("cuda", "https://download.pytorch.org/whl/cu128")):
        assert f'{flavour})' in text and index in text
    labels = " ".join(rest for op, rest in ins if op == "LABEL")
    for key, arg in (("source", "SOURCE"), ("revision", "GIT_COMMIT"), ("version", "VERSION"), ("created", "CREATED"),
                     ("base.name", "BASE_IMAGE")):
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in labels, key
    env = " ".join(rest for op, rest in ins if op == "ENV")
    assert "PSEUDOVAD_GIT_COMMIT=${GIT_COMMIT}" in env and "PSEUDOVAD_VERSION=${VERSION}" in env
    from pseudovad import build

    assert build.ENV_COMMIT == "PSEUDOVAD_GIT_COMMIT" and f"> {build.BUILD_FILE}" in text
    # the base build.sh uses by default: a python 3.11 slim image (pinned by digest once resolved)
    (base,) = [ln.strip() for ln in (ROOT / "docker" / "base-image").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    assert base.startswith("python:3.11-slim") and args["BASE_IMAGE"] == {base.split("@")[0]}


def test_build_script_tags_by_commit(tmp_path):
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    script = ROOT / "docker" / "build.sh"
    for extra, suffix in (([], ""), (["--cuda"], "-cuda")):
        r = subprocess.run(["bash", str(script), "--print-tag", "--allow-dirty", "--registry", "reg.example/ml", *extra],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert re.fullmatch(rf"reg\.example/ml/pseudovad:{sha[:12]}(-dirty)?{suffix}", r.stdout.strip()), r.stdout
    r = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == "docker/build.sh: unknown option --bogus (see --help)"
    for name in ("build.sh", "verify.sh"):
        assert subprocess.run(["bash", "-n", str(ROOT / "docker" / name)]).returncode == 0, name


def test_dockerfile_copies_existing_files_pins_the_lock_and_runs_as_non_root():
    ins = _instructions(DOCKERFILE)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    copied = []
    for op, rest in ins:
        if op == "COPY" and not rest.startswith("--from"):
            srcs = rest.split()[:-1]
            for src in srcs:
                assert (ROOT / src).exists(), f"COPY {src} does not exist"
                assert f"!{src.rstrip('/')}" in [i.rstrip("/") for i in ignore], f".dockerignore excludes {src}"
                copied.append(src.rstrip("/"))
    assert {"requirements.lock", "pyproject.toml", "src", "components", "pipelines"} <= set(copied)
    lock = _lock()
    pins = re.findall(r"\b([A-Za-z0-9_.\-]+)==([0-9][^\s\"';]*)", DOCKERFILE.read_text())
    assert pins
    for pkg, ver in pins:
        assert lock.get(pkg.lower()) == ver, f"{pkg}=={ver} but requirements.lock has {lock.get(pkg.lower())}"
    runs = " ".join(rest for op, rest in ins if op == "RUN")
    assert "pip install -r /tmp/requirements.lock" in runs and "pip install --no-deps /src" in runs
    users = [rest for op, rest in ins if op == "USER"]
    assert users and users[-1].split(":")[0] == str(tasks.UID)
    # the final stage copies the venv only: local wheels and CA bundles stay in the build stage
    final = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM"):]
    assert [rest for op, rest in final if op == "COPY"] == ["--from=build /opt/venv /opt/venv"]


def test_dockerfile_entry_point_is_the_console_script():
    scripts = _pyproject()["project"]["scripts"]
    (cmd,) = [json.loads(rest) for op, rest in _instructions(DOCKERFILE) if op in ("CMD", "ENTRYPOINT")]
    assert cmd[0] in scripts and scripts[cmd[0]] == "pseudovad.cli:main"
    assert scripts["pseudovad-kfp"] == "pipelines.cli:main"
    found = _pyproject()["tool"]["setuptools"]["packages"]["find"]
    assert {"pseudovad*", "components*", "pipelines*"} <= set(found["include"])


# ----------------------------------------------------------------------------------------------
# Local runs of the same pipelines (kfp.local SubprocessRunner), real MLflow server and S3 server

from tests.mlflow_server import mlflow_server  # noqa: E402,F401
from tests.s3_server import SECRET_KEY, make_bucket, s3_endpoint, s3_endpoint_session  # noqa: E402,F401

TINY_PARAMS = {
    "device": "cpu",
    "data": {"size": [32, 32], "clip_len": 8, "scored_index": 4, "clip_stride": 2},
    "model": {"ltgpa": {"width": [4, 6, 8, 8], "g_width": [4, 6, 8]}},
    # the last 10 of each video's 40 frames held out: the retraining run's store has no labels
    "train": {"batch_size": 4, "lr": 1e-3, "holdout_fraction": 0.25},
    # no bootstrap intervals: nothing here reads them (tests/test_evaluate.py checks them)
    "evaluate": {"top_k": 1, "bootstrap": 0},
    # tiny models never beat frame differencing on tiny footage: the floor rule would refuse every version
    "registry": {"beat_floor": False},
    # a 2-trial search, one epoch each, tuned on test video 01 (02 held out), trials on CPU
    "tune": {"max_epochs": 1, "grace_period": 1, "val_videos": ["01"], "cpus_per_trial": 1.0},
}


def _outputs(root: Path, pipeline_name: str) -> Path:
    (run,) = sorted((root / "outputs").glob(f"{pipeline_name}-*"))
    return run


def _artifact(run: Path, step: str, name: str) -> dict:
    out = json.loads((run / step / "executor_output.json").read_text())
    return out["artifacts"][name]["artifacts"][0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mlflow_server):  # noqa: F811
    """One local run of the training pipeline, tuned branch, on tiny synthetic footage."""
    from pseudovad import config as config_mod
    from pseudovad.data.synthetic import generate

    tmp = tmp_path_factory.mktemp("kfp-training")
    syn = config_mod.from_dict({"synthetic": {"train_videos": 2, "test_videos": 2, "frames": 40, "height": 48,
                                              "width": 64, "walkers": 2}})
    generate(syn.synthetic, tmp / "dataset")
    params = tmp / "params.yaml"
    # the file sets what typed parameters could set too: epochs (set below: that wins) and
    # patch_max_move (left unset: the file's value holds)
    params.write_text(yaml.safe_dump({**TINY_PARAMS, "pseudo": {"patch_max_move": 3},
                                      "train": {**TINY_PARAMS["train"], "epochs": 3}}))
    root = tmp / "kfp"
    rc = cli.main(["local", "training", "-P", str(params), "-a", f"dataset_uri={tmp / 'dataset'}",
                   "-a", f"mlflow_uri={mlflow_server}", "-a", "epochs=1", "-a", "run_tune=true",
                   "-a", "tune_samples=2", "-a", "tune_gpus_per_trial=0", "--root", str(root)])
    assert rc == 0
    return {"tmp": tmp, "root": root, "run": _outputs(root, "pseudovad-training"), "params": params}


@pytest.mark.integration
def test_training_pipeline_runs_locally_end_to_end(trained, mlflow_server):  # noqa: F811
    import torch
    from mlflow import MlflowClient

    run = trained["run"]
    # the tuned branch ran (extract → tune → train → evaluate → register), the other did not
    assert not any((run / step).exists() for step in ("train-2", "evaluate-2", "register-2"))
    tuned = _artifact(run, "tune", "best")["metadata"]["best_config"]
    assert set(tuned) == {"pseudo.lam", "pseudo.p", "train.lr"}
    assert _artifact(run, "tune", "metrics")["metadata"]["trials"] == 2
    used = yaml.safe_load((run / "train" / "history" / "params.yaml").read_text())
    assert (used["pseudo"]["lam"], used["pseudo"]["p"], used["train"]["lr"]) == \
        pytest.approx((tuned["pseudo.lam"], tuned["pseudo.p"], tuned["train.lr"]))
    # the params file decides; a typed parameter changes its key only when set (-a epochs=1)
    assert used["train"]["epochs"] == 1 and used["pseudo"]["patch_max_move"] == 3
    assert _artifact(run, "train", "history")["metadata"]["parameters_set"] == {
        "epochs": 1, "tune_samples": 2, "tune_gpus_per_trial": 0.0, "mlflow_uri": mlflow_server}
    metrics = _artifact(run, "evaluate", "metrics")["metadata"]
    evaluation = results.read(run / "evaluate" / "evaluation")
    assert metrics["auc_micro"] == pytest.approx(evaluation["auc_micro"]) and 0.0 <= metrics["auc_micro"] <= 1.0
    assert metrics["frames"] == 66                  # 2 × 40 frames, less each video's 4 + 3 edge frames no clip scores
    roc = _artifact(run, "evaluate", "roc")["metadata"]["confidenceMetrics"]
    assert roc[0]["falsePositiveRate"] == 0.0 and roc[-1]["recall"] == pytest.approx(1.0)
    assert all(json.dumps(p) for p in roc)          # finite thresholds: the KFP UI stores this as JSON
    blob = torch.load(run / "train" / "model", weights_only=True)
    assert blob["meta"]["method"] == "ltgpa" and blob["meta"]["config"]["train"]["epochs"] == 1
    assert _artifact(run, "train", "model")["metadata"]["clip_len"] == 8
    assert not any((trained["root"] / "checkpoints").rglob("*.pt"))   # finished runs leave no checkpoints

    c = MlflowClient(tracking_uri=mlflow_server)
    rm = c.get_registered_model("pseudovad-ltgpa")
    assert rm.aliases == {"champion": "1", "challenger": "1"}
    v1 = c.get_model_version("pseudovad-ltgpa", "1")
    assert float(v1.tags["auc_micro"]) == pytest.approx(evaluation["auc_micro"])
    assert v1.tags["eval_fingerprint"] == evaluation["fingerprint"]
    # no DVC remote: the imported dataset was decoded, and the step said so; its data versions are
    # DVC hashes, and the gate's fingerprint is the store's evaluation version
    store = _artifact(run, "extract", "store")["metadata"]
    assert store["dvc_how"] == "imported" and store["data_version"].endswith(".dir")
    assert store["evaluation_version"] == evaluation["fingerprint"]
    # the model's data version is that store's DVC hash: on the Model artifact and the registered version
    assert _artifact(run, "train", "model")["metadata"]["data_version"] == store["data_version"] == v1.tags["data_version"]
    assert "no DVC remote (dvc_remote is empty)" in (run / "extract" / "report").read_text()
    decision = _artifact(run, "register", "decision")["metadata"]
    assert decision["promoted"] is True and decision["version"] == "1"

    # every MLflow run of this pipeline run leads back to it: the KFP run id, the pipeline, the image
    from pseudovad import build

    runs = [r for r in c.search_runs([e.experiment_id for e in c.search_experiments()], max_results=1000)
            if r.data.tags.get("kfp.pipeline") == "pseudovad-training"]
    stages = {r.data.tags["pseudovad.stage"] for r in runs}
    assert {"tune", "tune-trial", "train", "evaluate", "register"} <= stages, stages
    (run_id,) = {r.data.tags.get("kfp.run_id") for r in runs}
    assert run_id and "{{" not in run_id
    for r in runs:
        assert r.data.tags["git.commit"] == build.source_commit().removesuffix("-dirty")
        if r.data.tags["pseudovad.stage"] == "pipeline":   # the parent spans steps: made by the first (train)
            continue
        cuda = r.data.tags["pseudovad.stage"] in ("tune", "tune-trial", "train")
        assert r.data.tags["kfp.image"] == (image.CUDA_IMAGE if cuda else image.IMAGE)
    # train, evaluate and register of this Kubeflow run are children of one parent run (#16)
    (parent,) = {r.data.tags.get("mlflow.parentRunId") for r in runs
                 if r.data.tags["pseudovad.stage"] in ("train", "evaluate", "register")}
    assert {r.info.run_id for r in runs if r.data.tags["pseudovad.stage"] == "pipeline"} == {parent}


@pytest.mark.integration
def test_retrain_pipeline_ingests_warm_starts_and_skips_when_nothing_is_new(
        trained, mlflow_server, s3_endpoint, tmp_path, capfd):  # noqa: F811
    from mlflow import MlflowClient

    from pseudovad import config as config_mod
    from pseudovad.data.synthetic import render_video, write_video

    client = make_bucket(s3_endpoint, "cams")
    syn = config_mod.from_dict({"synthetic": {"seed": 21, "frames": 40, "height": 48, "width": 64, "walkers": 2}})
    video, _ = render_video(syn.synthetic, "training", 0)      # another day of normal footage
    write_video(tmp_path / "day1.avi", video, syn.synthetic.fps)
    client.upload_file(str(tmp_path / "day1.avi"), "cams", "footage/cam1/day1.avi")
    client.put_object(Bucket="cams", Key="footage/cam1/broken.avi", Body=b"not a video at all" * 64)
    store = tmp_path / "volume" / "store"      # the data volume: the training run's store, without its labelled
    shutil.copytree(trained["run"] / "extract" / "store", store)     # test split (a camera owner's footage)
    manifest = json.loads((store / "manifest.json").read_text())
    manifest.update(videos=[v for v in manifest["videos"] if v["split"] == "training"], labels=None)
    (store / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(store / "testing")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**TINY_PARAMS, "storage": {"endpoint_url": s3_endpoint}}))

    def retrain(root: Path) -> Path:
        rc = cli.main(["local", "retrain", "-P", str(params), "-a", "source=s3://cams/footage/",
                       "-a", f"store_dir={store}", "-a", f"quarantine_dir={tmp_path / 'volume' / 'quarantine'}",
                       "-a", f"mlflow_uri={mlflow_server}", "-a", "epochs=1", "--root", str(root)])
        assert rc == 0
        return _outputs(root, "pseudovad-retrain")

    first = retrain(tmp_path / "kfp1")
    assert json.loads((first / "ingest" / "executor_output.json").read_text())["parameterValues"] == {"Output": True}
    counts = _artifact(first, "ingest", "counts")["metadata"]
    assert (counts["ingested"], counts["quarantined"], counts["failed"]) == (1, 1, 0)
    assert len(list((tmp_path / "volume" / "quarantine").glob("*.reason.txt"))) == 1
    snapshot = yaml.safe_load((first / "train" / "history" / "params.yaml").read_text())
    assert snapshot["train"]["init"] == "models:/pseudovad-ltgpa/1"     # warm start from the champion, pinned
    c = MlflowClient(tracking_uri=mlflow_server)
    v2 = c.get_model_version("pseudovad-ltgpa", "2")
    assert v2.tags["gate.decision"] in ("promoted", "kept")
    # no labels: the champion (v1, registered on labels) was scored beside v2 on the same held-out footage
    assert v2.tags["gate.evidence"] == "label-free" and "champion v1" in v2.tags["gate.reason"]
    evaluation = results.read(first / "evaluate" / "evaluation")
    assert evaluation["evidence"] == "label-free" and evaluation["baseline_version"] == "1"
    decision = _artifact(first, "register", "decision")["metadata"]
    assert decision["version"] == "2" and decision["promoted"] == (v2.tags["gate.decision"] == "promoted")
    assert c.get_registered_model("pseudovad-ltgpa").aliases["challenger"] == "2"

    second = retrain(tmp_path / "kfp2")          # nothing new in the bucket: no training, no version
    assert json.loads((second / "ingest" / "executor_output.json").read_text())["parameterValues"] == {"Output": False}
    assert _artifact(second, "ingest", "counts")["metadata"]["known"] == 2
    assert not (second / "train").exists()
    report = (second / "ingest" / "report").read_text()
    assert "ingest: nothing new" in report and "nothing to learn: pseudovad-ltgpa v2" in report
    assert len(c.search_model_versions("name = 'pseudovad-ltgpa'")) == 2
    assert SECRET_KEY not in capfd.readouterr().out


@pytest.mark.integration
def test_mae_nct_params_file_trains_mae_nct_with_its_settings_locally(trained, mlflow_server, tmp_path):  # noqa: F811
    """The issue #27 scenario: a params file saying MAE-NCT, 1 epoch, run through `pseudovad-kfp
    local training -P` with one typed parameter set: the run trains what the file says, the set
    parameter wins, and the settings it trained with are recorded (artifact, MLflow)."""
    import torch
    from mlflow import MlflowClient

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        **TINY_PARAMS, "model": {"method": "mae_nct", "mae": {"patch_size": 8, "embed_dim": 16, "depth": 1,
                                                              "heads": 2, "in_frames": 2}},
        "pseudo": {"mask_patch": 16, "mask_ratio": 0.5, "lam": 0.7},
        "train": {**TINY_PARAMS["train"], "epochs": 1, "max_steps": 2},
        "evaluate": {"top_k": 1, "bootstrap": 0}}))
    root = tmp_path / "kfp"
    assert cli.main(["local", "training", "-P", str(params), "-a", f"dataset_uri={trained['tmp'] / 'dataset'}",
                     "-a", f"mlflow_uri={mlflow_server}", "-a", "lam=0.2", "--root", str(root)]) == 0
    run = _outputs(root, "pseudovad-training")
    used = yaml.safe_load((run / "train-2" / "history" / "params.yaml").read_text())
    assert used["model"]["method"] == "mae_nct" and used["train"]["epochs"] == 1     # the file's
    assert used["pseudo"]["mask_ratio"] == 0.5                                       # the file's (typed, unset)
    assert used["pseudo"]["lam"] == 0.2                                              # set: wins over the file's 0.7
    assert torch.load(run / "train-2" / "model", weights_only=True)["meta"]["method"] == "mae_nct"
    history = _artifact(run, "train-2", "history")["metadata"]
    assert history["parameters_set"] == {"lam": 0.2, "mlflow_uri": mlflow_server}
    assert history["summary"]["epochs"] == 1

    c = MlflowClient(tracking_uri=mlflow_server)
    assert c.get_registered_model("pseudovad-mae_nct").aliases["champion"] == "1"
    (train_run,) = [r for r in c.search_runs([e.experiment_id for e in c.search_experiments()], max_results=1000)
                    if r.data.tags.get("pseudovad.stage") == "train" and r.data.tags["method"] == "mae_nct"]
    assert (train_run.data.params["model.method"], train_run.data.params["train.epochs"],
            train_run.data.params["pseudo.lam"], train_run.data.params["pseudo.mask_ratio"]) == ("mae_nct", "1", "0.2", "0.5")
    assert json.loads(train_run.data.tags["kfp.parameters_set"]) == {"lam": 0.2, "mlflow_uri": mlflow_server}
    (tmp_path / "logged").mkdir()
    logged = Path(c.download_artifacts(train_run.info.run_id, "params.yaml", str(tmp_path / "logged")))
    assert yaml.safe_load(logged.read_text()) == used


def test_every_setting_a_pipeline_or_step_takes_is_in_the_one_parameter_table():
    """PIPELINE_PARAMS is the only map from Kubeflow parameters to params keys: each of its keys is
    a params key, and every parameter that is not infrastructure (volumes, secrets, GPUs, paths,
    artifacts) is in it, so no component maps a setting of its own."""
    from components import evaluate, extract, ingest, register, train, tune
    from pseudovad.kubeflow import PIPELINE_PARAMS, SETTINGS
    from pseudovad.tune.space import field_type

    for key in PIPELINE_PARAMS.values():
        field_type(key)                                # raises for anything but a params leaf key
    infrastructure = {"dataset_uri", "source", "store_dir", "run_tune", "accelerator_type", "gpu_limit",
                      "gpu_node_selector", "gpu_tolerations", "checkpoint_pvc", "checkpoint_dir", "run_id",
                      "mlflow_secret", "data_pvc", "s3_secret", "videos", "roc_points", "repo_url", "revision",
                      "git_secret", "quarantine_dir", "retraining_round"}
    for p in (training_pipeline, retrain_pipeline, evaluate, extract, ingest, register, train, tune):
        for name, spec in (p.component_spec.inputs or {}).items():
            if spec.type in ("String", "Integer", "Float", "Boolean", "List", "Dict"):
                assert name in PIPELINE_PARAMS or name in SETTINGS or name in infrastructure, (p.name, name)
