"""aiomqtt is an extra (``streamvxl[mqtt]``): without it, a service with no [mqtt] table serves
its cameras, and one with [mqtt] is refused at once with the pip command, before anything runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import asyncio, sys
    sys.modules["aiomqtt"] = None  # what an installation without the mqtt extra has
    from streamvxl.errors import MissingDependencyError
    from streamvxl.serve import Service
    from streamvxl.serve.config import parse_config
    import streamvxl.cluster.front  # serve --ray without MQTT needs no aiomqtt either

    camera = '[cameras.door]\\nsource = "lavfi:testsrc=size=64x48:rate=2:duration=3"\\nfps = 2\\n'
    model = '[model]\\npath = "%s"\\ndevice = "cpu"\\n'
    service = Service(parse_config(model + camera))

    async def serve_briefly():
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        await asyncio.to_thread(service.started.wait, 120)
        assert service.started.is_set()
        stop.set()
        return await task

    assert asyncio.run(serve_briefly()) == 0
    with_mqtt = Service(parse_config(model + camera + '[mqtt]\\nport = 1\\n'))
    try:
        asyncio.run(with_mqtt.run(asyncio.Event()))
    except MissingDependencyError as e:
        print("refused:", e)
    else:
        raise SystemExit("a service with [mqtt] ran without aiomqtt")
    assert not with_mqtt.cameras  # nothing started
""")


def test_serving_without_the_mqtt_extra(tiny_checkpoint: Path) -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT % tiny_checkpoint],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "refused: the MQTT bridge ([mqtt]) needs aiomqtt: pip install 'streamvxl[mqtt]'" \
        in result.stdout
