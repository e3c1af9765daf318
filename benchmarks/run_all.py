"""Run every benchmark script in turn (each writes benchmarks/results/<topic>.md). Slow: an hour or more on 2 cores."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["foundation.py", "edit.py", "export.py", "debug.py", "optimize.py", "quantize.py", "deploy.py"]


def main() -> int:
    failed = []
    for script in SCRIPTS:
        start = time.perf_counter()
        print(f"== {script}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / script)])
        print(f"== {script}: exit {rc} in {time.perf_counter() - start:.0f} s", flush=True)
        if rc:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
