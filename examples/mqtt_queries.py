"""An agent that asks a camera questions over MQTT and prints the answers (and any alerts).

It talks to ``streamvxl serve`` through the broker only: it waits until the service says it is
``online`` (``<prefix>/available``), then publishes each question to ``<prefix>/<camera>/ask``
with an MQTT 5 response topic and correlation data, and prints the answer that comes back with
the time spans it drew on. Alerts of watch conditions (``<prefix>/+/alert``) are printed as
they arrive.

    streamvxl serve serve.toml &                       # a camera named "door"
    python -m examples.mqtt_queries --camera door "What happened?" "Is anyone at the door?" \\
        [--host 127.0.0.1] [--port 1883] [--prefix streamvxl] [--every 30 --rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Sequence

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def show(answer: dict) -> str:
    """An answer (or an error) as the lines printed for it."""
    if "error" in answer:
        return f"   error {answer['error']['code']}: {answer['error']['message']}"
    spans = ", ".join(f"{s['t_start']:.1f}-{s['t_end']:.1f} s" for s in answer["intervals"][-4:])
    t = answer["timings"]
    return (f"   A: {answer['text']}\n"
            f"      from {len(answer['intervals'])} spans (latest {spans or 'none'}); first "
            f"token {t['first_token'] * 1000:.0f} ms, total {t['total'] * 1000:.0f} ms")


async def ask_all(args: argparse.Namespace) -> int:
    me = f"agent-{uuid.uuid4().hex[:8]}"
    inbox = f"agents/{me}/answers"
    waiting: dict[bytes, asyncio.Future] = {}
    online = asyncio.Event()
    async with aiomqtt.Client(args.host, args.port, identifier=me, username=args.username,
                              password=args.password,
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(inbox, qos=1)
        await client.subscribe(f"{args.prefix}/available", qos=1)
        await client.subscribe(f"{args.prefix}/+/alert", qos=1)

        async def listen() -> None:
            async for message in client.messages:
                if message.topic.matches(f"{args.prefix}/available"):
                    if message.payload == b"online":
                        online.set()
                elif message.topic.matches(f"{args.prefix}/+/alert"):
                    a = json.loads(message.payload)
                    print(f"ALERT {a['camera']}: {a['condition']} {a['state']} at "
                          f"{a['t_start']:.1f}-{a['t_end']:.1f} s (score {a['score']:.2f})",
                          flush=True)
                else:
                    key = message.properties.CorrelationData
                    if key in waiting:
                        waiting.pop(key).set_result(json.loads(message.payload))

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(online.wait(), args.timeout)  # the retained "online"
        for round_ in range(args.rounds):
            if round_:
                await asyncio.sleep(args.every)
            for question in args.questions:
                key = uuid.uuid4().bytes
                waiting[key] = asyncio.get_running_loop().create_future()
                props = Properties(PacketTypes.PUBLISH)
                props.ResponseTopic, props.CorrelationData = inbox, key
                body = {"question": question, "max_new_tokens": args.max_new_tokens}
                await client.publish(f"{args.prefix}/{args.camera}/ask", json.dumps(body),
                                     qos=1, properties=props)
                answer = await asyncio.wait_for(waiting[key], args.timeout)
                print(f"Q ({args.camera}): {question}\n{show(answer)}", flush=True)
        listener.cancel()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("questions", nargs="+", help="what to ask")
    p.add_argument("--camera", required=True, help="the camera's name in the serve config")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--prefix", default="streamvxl")
    p.add_argument("--username", default=None)
    p.add_argument("--password", default=None)
    p.add_argument("--every", type=float, default=30.0, help="seconds between rounds")
    p.add_argument("--rounds", type=int, default=1, help="times to ask the questions")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a reply")
    return asyncio.run(ask_all(p.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
