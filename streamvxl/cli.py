"""Command line: ``streamvxl demo | watch | serve``.

``watch`` streams a source (file, lavfi pattern, RTSP/HTTP URL, camera) into a memory -- the
embedded default model or a Video-XL checkpoint -- with a live progress line, and answers
questions typed on stdin as the video goes by (`streamvxl.watch`). ``demo`` streams a synthetic
surveillance clip through the embedded default model and scores its answers (`streamvxl.demo`).
``serve`` runs the cameras of a TOML configuration on one model with an MQTT bridge
(`streamvxl.serve`).
"""

from __future__ import annotations

import argparse
import logging
import sys

from .errors import StreamVXLError
from .watch import add_arguments as watch_arguments

log = logging.getLogger("streamvxl.cli")


def _watch(args: argparse.Namespace) -> int:
    from . import watch

    return watch.run(args)


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    argv = ["--seed", str(args.seed)] + (["--fast"] if args.fast else [])
    if args.frames is not None:
        argv += ["--frames", str(args.frames)]
    return demo.main(argv)


def _serve(args: argparse.Namespace) -> int:
    from .serve import serve

    return serve(args.config, ray=args.ray)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamvxl", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="stream a synthetic clip through the default model and "
                       "score its answers")
    d.add_argument("--frames", type=int, default=None, help="clip length in frames at 2 fps")
    d.add_argument("--seed", type=int, default=0, help="selects the clip and its questions")
    d.add_argument("--fast", action="store_true", help="a short clip (48 frames)")
    d.set_defaults(func=_demo)
    w = sub.add_parser("watch", help="stream a source into a memory; ask questions any time")
    watch_arguments(w)
    w.set_defaults(func=_watch)
    s = sub.add_parser("serve", help="run the cameras of a TOML configuration on one model, "
                       "with an MQTT bridge (questions, answers, events, alerts, status)")
    s.add_argument("config", help="the configuration file (docs/serving.md)")
    s.add_argument("--ray", action="store_true", help="shard the cameras over Ray Serve "
                   "replicas with failover (the file's [ray] table; docs/cluster.md)")
    s.set_defaults(func=_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except StreamVXLError as e:
        print(f"streamvxl: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
