"""``streamvxl serve``'s configuration: the TOML file as typed settings.

Example (every key but ``cameras.<name>.source`` has a default)::

    [model]                       # absent: the embedded streamvxl-tiny
    path = "/models/VideoXL"      # a Video-XL checkpoint folder
    device = "cuda"
    fit = "pad"                   # wide frames padded, not centre-cropped (default: "crop")
    vision_batch = 32             # frames per vision forward, all cameras together (default 16)

    [serve]
    health_seconds = 10           # the health line, and the retained status over MQTT
    log_dir = "/var/lib/streamvxl"  # each camera's memory logged in <log_dir>/<camera>, reopened
    shutdown_seconds = 10         # SIGINT/SIGTERM: questions in flight get this long

    [memory]                      # every camera's memory (a camera's [cameras.X.memory] overrides)
    ratio = 8
    token_budget = 4096

    [mqtt]                        # absent: no MQTT bridge
    host = "127.0.0.1"
    port = 1883
    prefix = "streamvxl"
    username = "agent"
    password_file = "/etc/streamvxl/mqtt.pass"
    [mqtt.tls]
    ca = "/etc/streamvxl/ca.crt"

    [cameras.door]
    source = "rtsp://10.0.0.5/stream"
    fps = 1.0
    [[cameras.door.watch]]
    condition = "a person is at the door"
    threshold = 0.0
    hysteresis = 1.0

`load_config` reads and checks it; each mistake is a `ConfigError` naming the key and the fix.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

from ..config import MemoryConfig
from ..errors import ConfigError
from ..intervals.boundary import BoundaryConfig
from ..memory.recall import Retrieval, Scorer
from ..persist.durability import Durability
from ..preprocess import Fit
from ..runtime.config import RuntimeConfig
from .toml_table import Table

CAMERA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""A camera's name is one MQTT topic level and a directory name: no '/', '+', '#', spaces."""


@dataclass(frozen=True)
class WatchConfig:
    """One watch condition of a camera (`StreamHandle.watch`)."""

    condition: str
    threshold: float = 0.0
    hysteresis: float = 1.0


@dataclass(frozen=True)
class CameraConfig:
    name: str
    source: str
    """What `open_source` opens: a file, ``lavfi:<graph>``, rtsp://..., /dev/video0."""
    fps: float | None = 1.0
    """Frames per second sampled (None: every frame)."""
    realtime: bool = False
    """Read a file at its own pace, as if it were a camera."""
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    watch: tuple[WatchConfig, ...] = ()


@dataclass(frozen=True)
class TlsConfig:
    ca: str | None = None
    """CA certificates to check the broker with (None: the system's)."""
    cert: str | None = None
    """A client certificate (with ``key``) for brokers that require one."""
    key: str | None = None
    insecure: bool = False
    """Skip checking the broker's host name (never in production)."""


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "streamvxl"
    """Topics: ``<prefix>/<camera>/ask|event|alert|status`` and ``<prefix>/available``."""
    client_id: str | None = None
    """None: ``streamvxl-<prefix>`` (one bridge per prefix)."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive: int = 30
    tls: TlsConfig | None = None
    max_payload: int = 65536
    """Largest request accepted, bytes; a bigger one is answered with an error."""
    max_pending: int = 256
    """Questions per camera waiting or being answered; beyond it a question is answered
    ``busy`` at once."""
    answer_timeout: float = 120.0
    """Seconds a question may wait for its answer before it is answered ``timeout``."""
    outbox: int = 10000
    """Messages kept while the broker is away (events, alerts, answers), oldest dropped."""
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0


@dataclass(frozen=True)
class RayConfig:
    """``serve --ray``: cameras sharded over Ray Serve replicas (`streamvxl.cluster`)."""

    shards: int = 2
    """Replicas, each one hub (one model) and the cameras placed on it."""
    address: str | None = None
    """The Ray cluster to join ("auto": the local one started with ``ray start``); None
    starts a Ray instance inside the command."""
    cpus_per_shard: float = 1.0
    gpus_per_shard: float = 0.0
    """1 for one model per GPU."""
    check_seconds: float = 1.0
    """How often the front pings the shards (failover detection) and passes on their news."""
    ping_timeout: float = 5.0
    """A shard that does not answer a ping within this is taken for dead."""
    ask_timeout: float = 120.0


@dataclass(frozen=True)
class ServeConfig:
    cameras: tuple[CameraConfig, ...]
    model_path: str | None = None
    """A Video-XL checkpoint folder; None: the embedded default model."""
    device: str | None = None
    mqtt: MqttConfig | None = None
    log_dir: str | None = None
    """Each camera's memory log goes to ``<log_dir>/<camera>`` and is reopened from there."""
    health_seconds: float = 10.0
    shutdown_seconds: float = 10.0
    source: str = "<config>"
    """Where the settings came from (errors name it)."""
    ray: RayConfig | None = None
    """``[ray]``: how ``serve --ray`` shards the cameras (ignored without ``--ray``)."""
    fit: Fit | None = None
    """How frames that are not square fit the model's tower (`Preprocessor.fit`); None: as
    the model records (a centre crop for Video-XL checkpoints, the delta's record for the
    embedded model)."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    """How the one model runs (``[model] vision_batch``); the runtime's own defaults
    otherwise."""


def load_config(path: str | os.PathLike[str]) -> ServeConfig:
    """Read and check a serve configuration file.

    Raises:
        ConfigError: the file is missing, not TOML, or a key is unknown, missing or invalid;
            the message names the key and what would be valid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the serve configuration {str(path)!r}: {e}") from e
    return parse_config(text, path.name, base=path.parent)


def parse_config(text: str, source: str = "<config>", base: Path | None = None) -> ServeConfig:
    """`load_config` on the file's text (``base``: where relative paths start)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from e
    base = base or Path.cwd()
    doc = Table(data, "", source)
    model = doc.table("model")
    serve = doc.table("serve")
    defaults = _memory(doc.table("memory"), {})
    mqtt = doc.table("mqtt")
    ray = doc.table("ray")
    cameras_table = doc.table("cameras", required=True)
    assert cameras_table is not None
    doc.done()

    model_path = device = fit = None
    runtime = RuntimeConfig()
    if model is not None:
        model_path = model.take_str("path", None, example="/models/VideoXL")
        device = model.take_str("device", None, example="cuda")
        fit = model.take_choice("fit", get_args(Fit), None)
        runtime = RuntimeConfig(vision_batch=model.take_int(
            "vision_batch", runtime.vision_batch, minimum=1, maximum=4096))
        model.done()
        if model_path is not None:
            model_path = str(base / model_path)

    log_dir, health, shutdown = None, 10.0, 10.0
    if serve is not None:
        log_dir = serve.take_str("log_dir", None, example="/var/lib/streamvxl")
        health = serve.take_float("health_seconds", 10.0, example=10.0)
        shutdown = serve.take_float("shutdown_seconds", 10.0, allow_zero=True, example=10.0)
        serve.done()
        if log_dir is not None:
            log_dir = str(base / log_dir)

    cameras = []
    for name in cameras_table.data:
        cameras.append(_camera(cameras_table.table(name), name, defaults, source))
    cameras_table.done()
    if not cameras:
        raise ConfigError(f"{source}: [cameras] is empty; add one, e.g. [cameras.door] with "
                          "source = \"rtsp://10.0.0.5/stream\"")
    return ServeConfig(tuple(cameras), model_path, device,
                       _mqtt(mqtt, base) if mqtt is not None else None, log_dir, health,
                       shutdown, source, _ray(ray) if ray is not None else None, fit, runtime)


def _ray(t: Table) -> RayConfig:
    cfg = RayConfig(
        shards=t.take_int("shards", 2, minimum=1, maximum=4096),
        address=t.take_str("address", None, example="auto"),
        cpus_per_shard=t.take_float("cpus_per_shard", 1.0, allow_zero=True, example=1.0),
        gpus_per_shard=t.take_float("gpus_per_shard", 0.0, allow_zero=True, example=1.0),
        check_seconds=t.take_float("check_seconds", 1.0, example=1.0),
        ping_timeout=t.take_float("ping_timeout", 5.0, example=5.0),
        ask_timeout=t.take_float("ask_timeout", 120.0, example=120.0),
    )
    t.done()
    return cfg


def _camera(t: Table | None, name: str, defaults: dict, source: str) -> CameraConfig:
    assert t is not None
    if not CAMERA_NAME.match(name):
        raise ConfigError(f"{source}: [cameras.{name}]: a camera name is letters, digits, '-' "
                          "and '_' (1-64; it is an MQTT topic level and a directory name)")
    uri = t.take_str("source", example="rtsp://10.0.0.5/stream")
    fps = t.take_float("fps", 1.0, example=1.0)
    realtime = t.take_bool("realtime", False)
    memory = _memory(t.table("memory"), defaults)
    watches = []
    for w in t.tables("watch"):
        watches.append(WatchConfig(w.take_str("condition", example="a person is at the door"),
                                   w.take_float("threshold", 0.0, positive=False, example=0.0),
                                   w.take_float("hysteresis", 1.0, allow_zero=True,
                                                example=1.0)))
        w.done()
    texts = [w.condition for w in watches]
    if len(set(texts)) != len(texts):
        raise ConfigError(f"{t.where('watch')}: a condition is listed twice: {texts}")
    t.done()
    return CameraConfig(name, uri, fps, realtime, _build_memory(memory, t), tuple(watches))


MEMORY_KEYS = ("ratio", "token_budget", "window", "queue_frames", "gap_seconds", "overflow",
               "max_question_tokens", "remainder", "durability", "boundary", "eviction",
               "host_budget", "retrieval")


def _memory(t: Table | None, defaults: dict) -> dict:
    """A [memory] table's settings over ``defaults`` (checked by `MemoryConfig` later)."""
    out = dict(defaults)
    if t is None:
        return out
    if t.has("ratio"):
        out["ratio"] = t.take_int("ratio", minimum=1, maximum=1024)
    if t.has("token_budget"):
        out["token_budget"] = t.take_int("token_budget", minimum=1)
    if t.has("window"):
        out["window"] = t.take_int("window", minimum=1)
    if t.has("queue_frames"):
        out["queue_frames"] = t.take_int("queue_frames", minimum=1)
    if t.has("gap_seconds"):
        out["gap_seconds"] = t.take_float("gap_seconds", example=5.0)
    if t.has("overflow"):
        out["overflow"] = t.take_choice("overflow", ("block", "drop_oldest", "drop_newest"))
    if t.has("max_question_tokens"):
        out["max_question_tokens"] = t.take_int("max_question_tokens", minimum=1)
    if t.has("remainder"):
        out["remainder"] = t.take_choice("remainder", ("summarize", "drop"))
    if t.has("durability"):
        out["durability"] = Durability(t.take_choice("durability", ("record", "batch", "never")))
    if t.has("eviction"):
        out["eviction"] = t.take_choice("eviction", ("drop_oldest", "offload"))
    if t.has("host_budget"):
        out["host_budget"] = t.take_int("host_budget", minimum=0)
    r = t.table("retrieval")
    if r is not None:
        out["retrieval"] = {
            "budget": r.take_int("budget", None, minimum=1),
            "recent": r.take_float("recent", 0.25, example=0.25),
            "digest_tokens": r.take_int("digest_tokens", 8, minimum=1),
            "scorer": r.take_choice("scorer", get_args(Scorer), None),
            "frames": r.take_str("frames", "world",
                                 example="ViT-B-32@/etc/streamvxl/clip.safetensors"),
            "frame_rows": r.take_int("frame_rows", 8, minimum=1),
        }
        r.done()
    b = t.table("boundary")
    if b is not None:
        out["boundary"] = {
            "window": b.take_int("window", 3, minimum=1),
            "threshold": (b.take_choice("threshold", ("adaptive",))
                          if isinstance(b.data.get("threshold"), str)
                          else b.take_float("threshold", 0.15, example=0.15)),
            "min_frames": b.take_int("min_frames", 4, minimum=1),
            "max_frames": b.take_int("max_frames", 64, minimum=1),
        }
        b.done()
    t.done()
    out["_where"] = t.where()
    return out


def _build_memory(settings: dict, t: Table) -> MemoryConfig:
    kwargs = {k: v for k, v in settings.items() if k != "_where"}
    where = settings.get("_where", t.where())
    try:
        if "boundary" in kwargs:
            kwargs["boundary"] = BoundaryConfig(**kwargs["boundary"])
        if "retrieval" in kwargs:
            kwargs["retrieval"] = Retrieval(**kwargs["retrieval"])
        return MemoryConfig(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e


def _mqtt(t: Table, base: Path) -> MqttConfig:
    prefix = t.take_str("prefix", "streamvxl", example="streamvxl")
    if any(c in prefix for c in "+#") or prefix.startswith("/") or prefix.endswith("/"):
        raise t.error("prefix", prefix, "must be topic levels without wildcards or leading / "
                                        "trailing '/', e.g. prefix = \"home/cameras\"")
    password = t.take_str("password", None, example="secret")
    password_file = t.take_str("password_file", None, example="/etc/streamvxl/mqtt.pass")
    if password is not None and password_file is not None:
        raise ConfigError(f"{t.where()}: give password or password_file, not both")
    if password_file is not None:
        try:
            password = (base / password_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise t.error("password_file", password_file, f"cannot be read: {e}") from e
    tls = None
    tt = t.table("tls")
    if tt is not None:
        def file(key: str) -> str | None:
            value = tt.take_str(key, None, example=f"/etc/streamvxl/{key}.pem")
            if value is None:
                return None
            full = base / value
            if not full.is_file():
                raise tt.error(key, value, f"no such file ({full})")
            return str(full)

        tls = TlsConfig(file("ca"), file("cert"), file("key"), tt.take_bool("insecure", False))
        tt.done()
        if (tls.cert is None) != (tls.key is None):
            raise ConfigError(f"{tt.where()}: cert and key go together (a client certificate "
                              "and its private key)")
    cfg = MqttConfig(
        host=t.take_str("host", "127.0.0.1", example="127.0.0.1"),
        port=t.take_int("port", 8883 if tls else 1883, minimum=1, maximum=65535),
        prefix=prefix,
        client_id=t.take_str("client_id", None, example="streamvxl-serve"),
        username=t.take_str("username", None, example="agent"),
        password=password,
        keepalive=t.take_int("keepalive", 30, minimum=5, maximum=65535),
        tls=tls,
        max_payload=t.take_int("max_payload", 65536, minimum=64),
        max_pending=t.take_int("max_pending", 256, minimum=1),
        answer_timeout=t.take_float("answer_timeout", 120.0, example=120.0),
        outbox=t.take_int("outbox", 10000, minimum=1),
        reconnect_initial=t.take_float("reconnect_initial", 0.5, example=0.5),
        reconnect_max=t.take_float("reconnect_max", 30.0, example=30.0),
    )
    t.done()
    if cfg.password is not None and cfg.username is None:
        raise ConfigError(f"{t.where()}: a password needs a username")
    return cfg


__all__ = ["CameraConfig", "MqttConfig", "RayConfig", "ServeConfig", "TlsConfig", "WatchConfig",
           "load_config", "parse_config"]
