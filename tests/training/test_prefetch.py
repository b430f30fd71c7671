"""The prefetching pool's workers share one import of the program's heavy modules.

Under ``python -m package.module`` every worker re-runs the main module by name; the fork server
must have imported it (and what it imports) first, or each worker imports torch and transformers
on its own (158 s to a first step with 12 workers on a GPU host). The workers do not warn
about re-running a module already imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

HEAVY = """
import os
with open(os.environ["IMPORT_LOG"], "a") as log:  # one line per execution of this module
    log.write(f"{os.getpid()}\\n")
"""

ENTRY = """
from pkg import heavy  # noqa: F401 -- stands for torch, transformers, streamvxl
from training.prefetch import Prefetcher


class Source:
    def example(self, index, offset):
        return index + offset


def main():
    with Prefetcher(Source(), 3, lambda s: (range(3 * s, 3 * s + 3), 100) if s <= 2 else None
                    ) as pool:
        print(pool.get(1) + pool.get(2))


if __name__ == "__main__":
    main()
"""


def test_workers_do_not_reimport_what_the_main_module_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "heavy.py").write_text(textwrap.dedent(HEAVY))
    (package / "entry.py").write_text(textwrap.dedent(ENTRY))
    log = tmp_path / "imports.log"
    env = {**os.environ, "IMPORT_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    result = subprocess.run([sys.executable, "-m", "pkg.entry"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str([103, 104, 105, 106, 107, 108])
    pids = log.read_text().split()
    # the program itself and the fork server; none of the three workers
    assert len(pids) == 2, f"the heavy module ran in {len(pids)} processes: {pids}"
    assert "found in sys.modules" not in result.stderr  # runpy's warning, once per worker
