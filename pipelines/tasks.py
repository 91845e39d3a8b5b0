"""How pipeline steps are scheduled on Kubernetes: resources, GPUs, retries, volumes, secrets.

Kept apart from the pipeline graphs so the training and retraining pipelines schedule the same
step the same way. Nothing here runs pseudovad code; kfp.local ignores all of it but the
environment variables.
"""
from __future__ import annotations

import os

from kfp import kubernetes
from kfp.dsl import PipelineTask, pipeline_context
from kfp.dsl.pipeline_channel import PipelineChannel

from pseudovad import build, tracking

# cpu request, memory request, cpu limit, memory limit. Sized for the paper profile (256×256,
# 16-frame clips): train/tune hold a GPU and feed it from memory-mapped frame arrays; evaluate
# runs F on CPU over every test clip, so it gets the most cores.
RESOURCES: dict[str, tuple[str, str, str, str]] = {
    "extract": ("2", "4Gi", "4", "8Gi"),
    "ingest": ("2", "4Gi", "4", "8Gi"),
    "tune": ("8", "32Gi", "16", "64Gi"),
    "train": ("4", "16Gi", "8", "32Gi"),
    "evaluate": ("8", "16Gi", "16", "32Gi"),
    "register": ("500m", "1Gi", "1", "2Gi"),
}

# Preemptible (spot) GPU nodes disappear; the step is re-run and resumes from its checkpoint.
RETRIES = 3
BACKOFF = "120s"           # first wait; doubles each time (factor 2), capped by BACKOFF_MAX
BACKOFF_MAX = "3600s"

CHECKPOINT_MOUNT = "/mnt/pseudovad-checkpoints"   # the checkpoint PVC is mounted here
DATA_MOUNT = "/mnt/pseudovad-data"                # retraining: the persistent frame store PVC

# Where the KFP launcher stages a step's artifacts on the pod's disk (/<store>/<bucket>/<key> for
# minio://, s3://, gs://): `extract` holds the whole imported dataset there, and the frame store it
# writes. KFP 2.17 cannot request ephemeral storage for a container (resources.requests.
# ephemeral-storage), so these folders are emptyDir volumes with a size limit: on the node's disk,
# not the container's writable layer, writable by the non-root user, and bounded (past the limit
# the kubelet evicts the pod instead of filling the node). docs/deploy/kubeflow.md: a LimitRange for a request.
STAGING = ("/minio", "/s3", "/gcs")
STAGING_LIMIT = "200Gi"

# Optional secrets (a missing secret or key is skipped): MLflow credentials for steps that log,
# S3 credentials for ingest and the DVC remote, a git token for checking out a private
# repository. Names come from pipeline parameters.
MLFLOW_SECRET_KEYS = {k: k for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")}
S3_SECRET_KEYS = {k: k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")}
# A private git repository over https (steps that check out the project: `pseudovad.dvc_cache`).
GIT_SECRET_KEYS = {k: k for k in ("GIT_USERNAME", "GIT_TOKEN")}

UID = 1000   # the image's non-root user (docker/Dockerfile)



DEFAULT_GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def step(task: PipelineTask, name: str, *, cache: bool) -> PipelineTask:
    """Every step: CPU/memory requests and limits, display name, caching, quiet logs, non-root,
    and what it was compiled from (the drift guard's reference, the MLflow tags' pipeline and image)."""
    cpu, mem, cpu_max, mem_max = RESOURCES[name]
    task.set_display_name(name)
    task.set_cpu_request(cpu).set_memory_request(mem).set_cpu_limit(cpu_max).set_memory_limit(mem_max)
    task.set_caching_options(cache)
    task.set_env_variable("PSEUDOVAD_NO_PROGRESS", "1")   # no tqdm bars in pod logs
    kubernetes.set_security_context(task, run_as_user=UID, run_as_group=UID, run_as_non_root=True)
    compiled_from = _compiled_from()
    if compiled_from:
        task.set_env_variable(build.ENV_COMPILED_FROM, compiled_from)
        # label values: 63 characters of [A-Za-z0-9._-]; `kubectl get pods -l pseudovad.io/commit=…`
        kubernetes.add_pod_label(task, "pseudovad.io/commit", compiled_from.split("@", 1)[1][:63])
    # MLflow tags of the step's runs (tracking.KFP_TAGS); the run id comes at run time (step_config)
    task.set_env_variable(tracking.KFP_TAGS["kfp.pipeline"], pipeline_context.Pipeline.get_default_pipeline().name)
    task.set_env_variable(tracking.KFP_TAGS["kfp.image"], task.component_spec.implementation.container.image)
    return task


def _compiled_from() -> str:
    """`<version>@<commit>` of the code compiling the pipeline, "" under --allow-image-drift."""
    return "" if os.environ.get(build.ENV_ALLOW_DRIFT) else build.identity()


def gpu(task: PipelineTask, accelerator_type, limit, node_selector, tolerations) -> PipelineTask:
    """Request `limit` accelerators of `accelerator_type` (e.g. nvidia.com/gpu), all from parameters."""
    task.set_accelerator_type(accelerator_type).set_accelerator_limit(limit)
    # kfp 2.17 does not track these two as task inputs, so inside a dsl.If the enclosing DAG would
    # not receive them and the step could not resolve its GPU request (compiler and backend alike)
    task.register_pipeline_channels([c for c in (accelerator_type, limit) if isinstance(c, PipelineChannel)])
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    return task


def preemptible(task: PipelineTask) -> PipelineTask:
    return task.set_retry(num_retries=RETRIES, backoff_duration=BACKOFF, backoff_factor=2.0,
                          backoff_max_duration=BACKOFF_MAX)


def staging(task: PipelineTask) -> PipelineTask:
    """Bounded scratch space where the launcher downloads the dataset and stages the outputs."""
    for path in STAGING:
        kubernetes.empty_dir_mount(task, volume_name=f"staging{path.replace('/', '-')}", mount_path=path,
                                   size_limit=STAGING_LIMIT)
    return task


def checkpoints(task: PipelineTask, pvc_name) -> PipelineTask:
    """Mount the checkpoint volume: a retried pod finds the killed pod's last checkpoint there."""
    return kubernetes.mount_pvc(task, pvc_name=pvc_name, mount_path=CHECKPOINT_MOUNT)


def volume(task: PipelineTask, pvc_name, mount_path: str) -> PipelineTask:
    return kubernetes.mount_pvc(task, pvc_name=pvc_name, mount_path=mount_path)


def mlflow_secret(task: PipelineTask, secret_name) -> PipelineTask:
    return kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=MLFLOW_SECRET_KEYS,
                                        optional=True)


def s3_secret(task: PipelineTask, secret_name) -> PipelineTask:
    return kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=S3_SECRET_KEYS,
                                        optional=True)


def git_secret(task: PipelineTask, secret_name) -> PipelineTask:
    return kubernetes.use_secret_as_env(task, secret_name=secret_name, secret_key_to_env=GIT_SECRET_KEYS,
                                        optional=True)
