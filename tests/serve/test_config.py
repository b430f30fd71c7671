"""The serve configuration: a full file reads as typed settings; each mistake is a ConfigError
that names its key and what would be valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamvxl import ConfigError, FixedRatio
from streamvxl.runtime.config import RuntimeConfig
from streamvxl.serve.config import load_config, parse_config

FULL = """
[model]
path = "ckpt"
device = "cpu"
fit = "pad"
vision_batch = 48

[serve]
health_seconds = 5
log_dir = "memories"
shutdown_seconds = 3

[memory]
ratio = 4
token_budget = 2048
durability = "batch"

[mqtt]
host = "broker.local"
prefix = "home/cameras"
username = "agent"
password = "pw"
max_payload = 4096

[cameras.door]
source = "rtsp://10.0.0.5/stream"
fps = 2
[cameras.door.memory]
token_budget = 1024
[cameras.door.memory.boundary]
max_frames = 12
threshold = "adaptive"
[[cameras.door.watch]]
condition = "a person is at the door"
threshold = 0.5
[[cameras.door.watch]]
condition = "a parcel is on the step"

[cameras.yard]
source = "lavfi:testsrc"
realtime = true
fps = 1
"""


def test_a_full_file_reads_as_typed_settings(tmp_path: Path) -> None:
    (tmp_path / "serve.toml").write_text(FULL)
    c = load_config(tmp_path / "serve.toml")
    assert c.model_path == str(tmp_path / "ckpt") and c.device == "cpu" and c.fit == "pad"
    assert c.runtime.vision_batch == 48
    assert c.log_dir == str(tmp_path / "memories") and c.health_seconds == 5.0
    assert c.shutdown_seconds == 3.0
    door, yard = c.cameras
    assert (door.name, door.source, door.fps, door.realtime) == (
        "door", "rtsp://10.0.0.5/stream", 2.0, False)
    assert door.memory.token_budget == 1024 and door.memory.ratio_policy == FixedRatio(4)
    assert door.memory.boundary.max_frames == 12 and door.memory.boundary.threshold == "adaptive"
    assert door.memory.durability.fsync == "batch"
    assert [(w.condition, w.threshold, w.hysteresis) for w in door.watch] == [
        ("a person is at the door", 0.5, 1.0), ("a parcel is on the step", 0.0, 1.0)]
    assert yard.memory.token_budget == 2048 and yard.realtime and yard.watch == ()
    m = c.mqtt
    assert (m.host, m.port, m.prefix, m.username, m.password, m.max_payload) == (
        "broker.local", 1883, "home/cameras", "agent", "pw", 4096)
    assert m.tls is None


def test_tiers_and_retrieval_read_as_memory_settings() -> None:
    c = parse_config('[memory]\ntoken_budget = 512\neviction = "offload"\nhost_budget = 4096\n'
                     '[memory.retrieval]\nbudget = 256\nrecent = 0.5\n'
                     '[cameras.cam]\nsource = "x.mp4"\n')
    m = c.cameras[0].memory
    assert (m.eviction, m.host_budget, m.retrieval.budget, m.retrieval.recent) == \
        ("offload", 4096, 256, 0.5)
    assert m.retrieval.scorer is None and m.retrieval.frames == "world"  # the model's choice
    c = parse_config('[memory.retrieval]\nscorer = "frames"\nframes = "ViT-B-32@/w/c.safetensors"'
                     '\nframe_rows = 4\n[cameras.cam]\nsource = "x.mp4"\n')
    r = c.cameras[0].memory.retrieval
    assert (r.scorer, r.frames, r.frame_rows) == ("frames", "ViT-B-32@/w/c.safetensors", 4)


def test_the_smallest_file_needs_only_a_camera() -> None:
    c = parse_config('[cameras.cam]\nsource = "x.mp4"\n')
    assert c.mqtt is None and c.model_path is None and c.log_dir is None and c.fit is None
    assert c.runtime == RuntimeConfig()
    assert c.cameras[0].fps == 1.0


@pytest.mark.parametrize("text, named", [
    ("[cameras.door]\nsource = 'a'\nfsp = 2\n", "[cameras.door] fsp: unknown key; did you mean 'fps'"),
    ("[cameras.door]\nsource = 'a'\nfps = 'fast'\n", "[cameras.door] fps = 'fast': must be a number > 0"),
    ("[cameras.door]\nsource = 'a'\nfps = 0\n", "fps = 0: must be a number > 0, e.g. fps = 1.0"),
    ("[cameras.door]\nfps = 1\n", "[cameras.door]: missing 'source'"),
    ("[serve]\nhealth_seconds = 1\n", "missing table [cameras]"),
    ("[cameras]\n", "[cameras] is empty"),
    ("[cameras.'front door']\nsource = 'a'\n", "a camera name is letters, digits"),
    ("[cameras.d]\nsource = 'a'\n[memory]\ntoken_budget = -3\n", "[memory] token_budget = -3"),
    ("[cameras.d]\nsource = 'a'\n[memory]\nratio = 'high'\n", "[memory] ratio = 'high'"),
    ("[cameras.d]\nsource = 'a'\n[memory]\noverflow = 'spill'\n", "overflow = 'spill': must be one of"),
    ("[cameras.d]\nsource = 'a'\n[memory]\ndurability = 'always'\n", "durability = 'always'"),
    ("[cameras.d]\nsource = 'a'\n[memory]\neviction = 'spill'\n", "eviction = 'spill': must be one of"),
    ("[cameras.d]\nsource = 'a'\n[memory]\neviction = 'offload'\n", "set token_budget too"),
    ("[cameras.d]\nsource = 'a'\n[memory.retrieval]\nrecent = 2.0\n", "Retrieval.recent"),
    ("[cameras.d]\nsource = 'a'\n[memory.retrieval]\nbugdet = 2\n", "bugdet: unknown key"),
    ("[cameras.d]\nsource = 'a'\n[memory.retrieval]\nscorer = 'pixels'\n", "scorer = 'pixels'"),
    ("[cameras.d]\nsource = 'a'\n[memory.retrieval]\nframes = 'clip.pt'\n", "Retrieval.frames"),
    ("[cameras.d]\nsource = 'a'\n[memory.boundary]\nmin_frames = 8\nmax_frames = 4\n", "[memory]"),
    ("[cameras.d]\nsource = 'a'\n[[cameras.d.watch]]\nthreshold = 1.0\n", "[cameras.d.watch[0]]: missing 'condition'"),
    ("[cameras.d]\nsource = 'a'\n[[cameras.d.watch]]\ncondition = 'x'\n[[cameras.d.watch]]\ncondition = 'x'\n",
     "a condition is listed twice"),
    ("[cameras.d]\nsource = 'a'\n[mqtt]\nport = 70000\n", "[mqtt] port = 70000: must be a whole number 1..65535"),
    ("[cameras.d]\nsource = 'a'\n[mqtt]\nprefix = 'a/#'\n", "[mqtt] prefix = 'a/#'"),
    ("[cameras.d]\nsource = 'a'\n[mqtt]\npassword = 'p'\n", "a password needs a username"),
    ("[cameras.d]\nsource = 'a'\n[mqtt]\nusername = 'u'\npassword = 'p'\npassword_file = 'f'\n",
     "password or password_file, not both"),
    ("[cameras.d]\nsource = 'a'\n[mqtt]\npassword_file = 'nowhere'\n", "password_file = 'nowhere': cannot be read"),
    ("[cameras.d]\nsource = 'a'\n[mqtt.tls]\nca = 'missing.crt'\n", "[mqtt.tls] ca = 'missing.crt': no such file"),
    ("[cameras.d]\nsource = 'a'\n[mqtt]\nhost = 5\n", "[mqtt] host = 5: must be a non-empty string"),
    ("[cameras.d]\nsource = 'a'\n[modle]\npath = 'x'\n", "modle: unknown key; did you mean 'model'"),
    ("[cameras.d]\nsource = 'a'\n[model]\nfit = 'squash'\n", "[model] fit = 'squash': must be one of 'crop', 'pad'"),
    ("[cameras.d]\nsource = 'a'\n[model]\nvision_batch = 0\n", "[model] vision_batch = 0"),
    ("[cameras.d]\nsource = 'a'\n[serve]\nhealth_seconds = true\n", "health_seconds = True"),
    ("cameras = 3\n", "cameras = 3: must be a table"),
    ("[cameras.d\nsource = 'a'\n", "not valid TOML"),
])
def test_each_mistake_names_its_key(text: str, named: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "serve.toml", base=tmp_path)
    assert named in str(e.value)
    assert str(e.value).startswith("serve.toml") or "serve configuration" in str(e.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the serve configuration"):
        load_config(tmp_path / "nope.toml")


def test_the_models_fit_and_batch_reach_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """``[model] fit`` changes how the shared runtime fits frames, ``vision_batch`` how many
    it encodes at once; absent, the model's own fit and the runtime's default batch."""
    from streamvxl.runtime import Runtime
    from streamvxl.runtime.hub import Hub
    from streamvxl.serve.camera import load_hub
    from streamvxl.testing import make_tokenizer, random_videoxl

    model, tokenizer = random_videoxl(0), make_tokenizer()
    monkeypatch.setattr(Runtime, "default", classmethod(
        lambda cls, config=None, device=None: cls(model, tokenizer, config=config)))
    cam = '[cameras.cam]\nsource = "x.mp4"\n'
    for text, fit, batch in ((cam, "crop", RuntimeConfig().vision_batch),
                             ('[model]\nfit = "pad"\nvision_batch = 40\n' + cam, "pad", 40)):
        hub = load_hub(parse_config(text))
        try:
            assert isinstance(hub, Hub) and hub.runtime.preprocessor.fit == fit
            assert hub.runtime.config.vision_batch == batch
            assert hub.runtime.preprocessor.image_size == model.image_size
        finally:
            hub.close()
