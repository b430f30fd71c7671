"""A real RTSP server for the tests: GStreamer's gst-rtsp-server serving a moving test pattern.

Run with the system Python that has PyGObject (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-plugins-{base,good,ugly}); it prints "ready" once it listens:

    /usr/bin/python3 tests/sources/rtsp_server.py --port 8554 --path /cam

H.264 (x264, zero latency, a key frame every 10 frames) over RTP -- or VP8 with --codec vp8;
320x240 at 10 fps unless --width/--height/--fps say otherwise. Kill it to take the camera
down.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/cam")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--pattern", default="ball")
    p.add_argument("--codec", choices=("h264", "vp8"), default="h264")
    args = p.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    encode = {"h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 "
                      "! rtph264pay name=pay0 pt=96 config-interval=1",
              "vp8": "vp8enc deadline=1 keyframe-max-dist=10 ! rtpvp8pay name=pay0 pt=96",
              }[args.codec]
    factory.set_launch(
        f"( videotestsrc is-live=true pattern={args.pattern} "
        f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
        f"! {encode} )")
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr, flush=True)
        return 1
    print("ready", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
