"""A real two-node Ray cluster on 127.0.0.1 (`ray start --head` + `ray start --address`), for tests.

Each node is one `ray start --block` process in its own session, with 1 CPU, a custom resource
naming it (`pv_head`, `pv_worker`), free ports for everything Ray would otherwise put on a fixed
port, and its own temp dir inside the test's. Stopped by PID: SIGTERM to each `ray start` (its
reaper takes the node's daemons down), then SIGKILL to whatever is left of that process group.
Never `ray stop`: it kills every Ray process on the machine, other people's too. Token
authentication is on, with a token of the cluster's own (`Cluster.env()`), as on a KubeRay cluster
that enables it.

`ray start` writes the cluster's address to `<temp dir>/ray_current_cluster`, where a plain
`ray.init()` of a process whose Ray temp dir is the same (RAY_TMPDIR=`root`) would find it and join.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.mlflow_server import free_port

STARTUP_S = 180       # two `ray start` on a loaded 2-core machine
NODE_RESOURCES = {"head": {"pv_head": 1}, "worker": {"pv_worker": 1}}


@dataclass
class Cluster:
    root: Path                       # RAY_TMPDIR under which the head's temp dir (root/ray) lies
    gcs_address: str                 # 127.0.0.1:<port>, for drivers on this machine
    client_address: str              # ray://127.0.0.1:<port>, Ray Client (what KubeRay exposes)
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    nodes: dict[str, str] = field(default_factory=dict)          # "head" / "worker" → node id
    procs: list[subprocess.Popen] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """For the nodes and every process that talks to them."""
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
        # Token authentication with this cluster's own token: Ray 2.60 turns it on by itself when
        # ~/.ray/auth_token exists (any local ray.init() on the machine writes one), and a driver
        # then needs the very token the nodes started with
        env["RAY_AUTH_MODE"] = "token"
        env["RAY_AUTH_TOKEN"] = self.token
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        # "0" (what a local session sets) refuses a second node; "1" is Linux's default
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"
        return env

    def logs(self, pattern: str = "ray_client_server*") -> str:
        """Tails of the head's logs matching `pattern`, for a failing test's message."""
        out = []
        for f in sorted((self.root / "ray").glob(f"session_*/logs/{pattern}")):
            text = f.read_text(errors="replace").strip()
            if text:
                out.append(f"--- {f.name}\n{text[-1500:]}")
        return "\n".join(out)


def _start_node(cluster: Cluster, name: str, args: list[str]) -> None:
    ray_bin = Path(sys.executable).with_name("ray")
    temp_dir = cluster.root / ("ray" if name == "head" else f"ray-{name}")
    cmd = [str(ray_bin), "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0",
           f"--resources={json.dumps(NODE_RESOURCES[name])}", f"--temp-dir={temp_dir}",
           "--object-store-memory=100000000", "--disable-usage-stats",
           f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
           f"--metrics-export-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
           f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}", *args]
    log = open(cluster.root / f"{name}.log", "wb")
    cluster.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=cluster.env(),
                                          cwd=cluster.root, start_new_session=True))
    log.close()


_NODES_SCRIPT = """
import json, sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) == 2:
        break
    time.sleep(1)
print(json.dumps({n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}))
"""


def node_ids(cluster: Cluster, wait_s: float) -> dict[str, dict]:
    """{node id: resources} of the alive nodes, once both joined (or after wait_s)."""
    r = subprocess.run([sys.executable, "-c", _NODES_SCRIPT, cluster.gcs_address, str(wait_s)], env=cluster.env(),
                       capture_output=True, text=True, timeout=wait_s + 120, cwd=cluster.root)
    if r.returncode != 0:
        raise RuntimeError(f"cannot list the cluster's nodes:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def start() -> Cluster:
    # Short root: Ray's Unix sockets live in <temp dir>/session_<time>_<pid>/sockets (108-byte limit)
    root = Path(tempfile.mkdtemp(prefix="pvray-"))
    gcs, client = free_port(), free_port()
    cluster = Cluster(root, f"127.0.0.1:{gcs}", f"ray://127.0.0.1:{client}")
    try:
        _start_node(cluster, "head", ["--head", f"--port={gcs}", f"--ray-client-server-port={client}",
                                      "--include-dashboard=false"])
        # the head writes its address file last, once its GCS answers: then the worker can join
        deadline = time.monotonic() + STARTUP_S
        while not (root / "ray" / "ray_current_cluster").is_file():
            if cluster.procs[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray head did not start:\n{_tail(root / 'head.log')}")
            time.sleep(0.5)
        _start_node(cluster, "worker", [f"--address={cluster.gcs_address}"])
        nodes = node_ids(cluster, STARTUP_S)
        for name, resources in NODE_RESOURCES.items():
            (key,) = resources
            ids = [nid for nid, res in nodes.items() if key in res]
            if len(ids) != 1:
                raise RuntimeError(f"ray {name} node not in the cluster ({nodes}):\n{_tail(root / f'{name}.log')}")
            cluster.nodes[name] = ids[0]
    except BaseException:
        stop(cluster)
        raise
    return cluster


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.is_file() else ""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop(cluster: Cluster) -> list[int]:
    """Stop every node by its `ray start` PID; returns the process groups still alive (none)."""
    for proc in reversed(cluster.procs):          # the worker first, then the head
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in reversed(cluster.procs):
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    left = []
    for proc in cluster.procs:                    # the node's daemons share its process group
        deadline = time.monotonic() + 20
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(1)
        if proc.poll() is None:
            proc.wait(timeout=10)
        if _group_alive(proc.pid):
            left.append(proc.pid)
    shutil.rmtree(cluster.root, ignore_errors=True)
    return left
