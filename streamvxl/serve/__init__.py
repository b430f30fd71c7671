"""``streamvxl serve CONFIG.toml``: cameras on one model, answering agents over MQTT.

`load_config` reads the TOML file (`streamvxl.serve.config`); `Service` runs the cameras, the
health line and the `MqttBridge` (`streamvxl.serve.bridge`; its messages:
`streamvxl.serve.protocol`); `serve` is the command: it runs a service until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .config import (
    CameraConfig,
    MqttConfig,
    RayConfig,
    ServeConfig,
    TlsConfig,
    WatchConfig,
    load_config,
)
from .service import Service

if TYPE_CHECKING:
    from .bridge import BridgeStats, MqttBridge

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    """`MqttBridge` and `BridgeStats` on first use: aiomqtt (the ``mqtt`` extra) is needed only
    by a service that has an [mqtt] table."""
    if name in ("MqttBridge", "BridgeStats"):
        from . import bridge

        return getattr(bridge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def serve(path: str | os.PathLike[str], *, ray: bool = False) -> int:
    """Run the service that the configuration file ``path`` describes until SIGINT / SIGTERM;
    0 after a clean shutdown. ``ray``: shard its cameras over Ray Serve replicas
    (`streamvxl.cluster`; the file's ``[ray]`` table).

    Raises:
        ConfigError: the file or what it names is unusable (the message names the key).
    """
    config = load_config(path)
    if not ray:
        return asyncio.run(_serve(Service(config)))
    try:
        from ..cluster.front import ClusterService
    except ImportError as e:
        raise ConfigError(f"serve --ray needs Ray Serve: pip install 'streamvxl[ray]' ({e})") \
            from e
    text = Path(path).read_text(encoding="utf-8")
    return asyncio.run(_serve(ClusterService(config, text, str(path))))


async def _serve(service) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = [signal.SIGINT, signal.SIGTERM]
    for sig in signals:
        loop.add_signal_handler(sig, _stopping, stop, sig)
    if hasattr(service, "reload"):  # SIGHUP: read the file again (serve --ray: its shards)
        signals.append(signal.SIGHUP)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(service.reload()))
    try:
        return await service.run(stop)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _stopping(stop: asyncio.Event, sig: signal.Signals) -> None:
    if stop.is_set():
        log.warning("%s again: still shutting down", sig.name)
    log.info("%s: shutting down", sig.name)
    stop.set()


__all__ = ["BridgeStats", "CameraConfig", "MqttBridge", "MqttConfig", "RayConfig", "ServeConfig",
           "Service",
           "TlsConfig", "WatchConfig", "load_config", "serve"]
