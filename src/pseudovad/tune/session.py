"""Ray for a search: the session (a running Ray, a cluster at `tune.address`, or a local one on
127.0.0.1), the trial scheduler (ASHA or FIFO) and the search algorithm (random, grid, Optuna,
HyperOpt).
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Iterator

from pseudovad.config import Config
from pseudovad.errors import ConfigError

log = logging.getLogger(__name__)

CLIENT_TRIES = 3             # connecting to a Ray cluster through Ray Client (ray://)
CLIENT_RETRY_S = 5.0

THREAD_TIMEOUT_S = 60   # seconds Tune waits for a stopped trial's thread before reusing its actor


@contextlib.contextmanager
def ray_session(cfg: Config) -> Iterator[None]:
    """Use a running Ray (tests, notebooks), else start one: local by default, `tune.address` for a cluster.

    Where: `tune.address` (`ray://head:10001`, `host:port`, `auto`), else `RAY_ADDRESS` (what
    `ray job submit` sets for its entry point), else a fresh local Ray: `address="local"`, because
    a plain `ray.init()` would join whatever cluster `ray start` last ran on this machine (its
    address file in /tmp/ray), e.g. someone else's. A local Ray binds to 127.0.0.1
    (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, set before Ray is imported): nothing else on the
    network can reach its ports.
    """
    address, source = cfg.tune.address, "tune.address"
    if address is None and os.environ.get("RAY_ADDRESS"):
        address, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    if address is None:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # With reuse_actors, Tune waits TUNE_FUNCTION_THREAD_TIMEOUT_S (default 2 s) for a stopped
    # trial's training thread to reach its next report before handing the actor to the next trial;
    # on a loaded 2-core machine an epoch step takes longer and the reuse fails. Workers of a local
    # Ray inherit this environment.
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", str(THREAD_TIMEOUT_S))
    import ray

    if ray.is_initialized():
        yield
        return
    # Ray Client (ray://) starts a server process per connection on the head; on a busy head that
    # start can fail ("Initialization failure from server") and work the next time: three tries
    for attempt in range(1, CLIENT_TRIES + 1):
        try:
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=True)
            break
        except (ConnectionError, RuntimeError, ValueError) as e:
            if address is None:
                raise
            why = " ".join(str(e).split())[:200]
            if attempt == CLIENT_TRIES or "Initialization failure from server" not in why:
                raise ConfigError(f"{source}: cannot connect to Ray at {address} ({why})") from None
            log.warning("Ray at %s: connection %d of %d failed (%s); trying again", address, attempt, CLIENT_TRIES, why)
            ray.shutdown()
            time.sleep(CLIENT_RETRY_S)
    try:
        yield
    finally:
        ray.shutdown()


def make_scheduler(cfg: Config):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    t = cfg.tune
    if t.scheduler == "fifo":
        return FIFOScheduler()
    # time_attr is the trial's own epoch count, not Ray's report counter, so a trial resumed from its
    # train checkpoint after a restore sits on the right rung
    return ASHAScheduler(time_attr="epoch", max_t=t.max_epochs, grace_period=t.grace_period,
                         reduction_factor=t.reduction_factor)


def make_searcher(cfg: Config):
    search = cfg.tune.search
    if search in ("random", "grid"):
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=cfg.seed)
    package = {"optuna": "optuna", "hyperopt": "hyperopt"}[search]
    try:
        __import__(package)
    except ImportError:
        raise ConfigError(f"tune.search: {search} needs the {package} package, which is not installed "
                          f"(pip install {package}, or use random or grid)") from None
    if search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=cfg.seed)
    from ray.tune.search.hyperopt import HyperOptSearch

    return HyperOptSearch(random_state_seed=cfg.seed)
