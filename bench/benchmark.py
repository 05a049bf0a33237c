#!/usr/bin/env python
"""sat-triton benchmark: the Triton ensemble against wtpsplit's SaT in-process, in one run.

The code lives in the ``bench`` package beside this file (bench/__init__.py lists its modules);
this script is its command line, the same as ``python -m bench``:

    python bench/benchmark.py --quick            # ~3-5 minutes on a 2-core CPU
    python bench/benchmark.py --help
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)  # run as a script: bench/'s modules are bench.*, never top-level names (corpus, load, ...)
sys.path.insert(0, str(ROOT))

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
