#!/usr/bin/env bash
# Create .venv and install sat-triton with everything the builder, the server and the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
.venv/bin/python - <<'PY'
import numpy, tokenizers, onnxruntime, torch, tritonclient, wtpsplit
import build, cryptography, mypy, twine  # the packaging and TLS tests
assert numpy.__version__.startswith("1."), "the Triton 24.10 Python stub needs numpy<2"
print(f"ready: numpy {numpy.__version__}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
PY
# Docker, debootstrap and Prometheus (apt), the images' wheelhouse and base root filesystem, hadolint and
# checkov: what the container and deployment tests run.
bash scripts/setup-tools.sh
