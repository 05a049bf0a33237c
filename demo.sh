#!/usr/bin/env bash
# One command: set up .venv, build a model repository, serve it with a real tritonserver, call it.
#   ./demo.sh                      # a tiny generated checkpoint (works offline)
#   ./demo.sh sat-3l-sm            # a real SaT model from the Hugging Face Hub
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
