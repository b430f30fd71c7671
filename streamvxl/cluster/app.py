"""The Ray Serve side: each shard is a Serve application of one replica running a `CameraShard`.

One application per shard (``shard-0``, ``shard-1``, ...) rather than one deployment of n
replicas: a camera's memory has exactly one writer, so its pushes, questions and watch
conditions must reach one known replica, and Serve's handles address applications, not the
replicas of one. Serve still does what it is for: it places each replica (``num_cpus`` /
``num_gpus`` per shard, so one model per GPU), checks its health, restarts it when its process
dies, and carries every call. The front (`streamvxl.cluster.front`) decides which shard holds
which camera (`streamvxl.cluster.placement`).
"""

from __future__ import annotations

import contextlib

from ray import serve

from .shard import CameraShard

HEALTH_CHECK_SECONDS = 2.0

REPLICA_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}
"""Each call runs on the replica's own event loop, not handed to a second loop on a thread of
its own: a shard's methods never block their loop (the model runs on the hub's thread, a
camera opens on a worker thread), so the hand-over would only add a thread hop per question."""


@serve.deployment(num_replicas=1, max_ongoing_requests=1024,
                  health_check_period_s=HEALTH_CHECK_SECONDS, health_check_timeout_s=30.0,
                  graceful_shutdown_timeout_s=30.0,
                  # a log line per call is file I/O on every question; the shard logs its own
                  logging_config={"enable_access_log": False})
class ShardDeployment(CameraShard):
    """A `CameraShard` as a Serve replica (its methods are called through the handle)."""

    def __del__(self) -> None:  # Serve calls it on a graceful shutdown of the replica
        with contextlib.suppress(Exception):  # the process is going away either way
            self.shutdown()


def shard_application(config_text: str, name: str, *, num_cpus: float, num_gpus: float):
    """The Serve application of the shard ``name``."""
    options = {"num_cpus": num_cpus, "num_gpus": num_gpus,
               "runtime_env": {"env_vars": REPLICA_ENV}}
    return ShardDeployment.options(name=name, ray_actor_options=options).bind(config_text,
                                                                             name)


__all__ = ["ShardDeployment", "shard_application"]
