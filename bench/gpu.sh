#!/usr/bin/env bash
# One command on a GPU machine for the GPU figures of docs/performance.md: the benchmark table (the
# default GPU build against wtpsplit and the model alone), the capacity curve, and the tokenizer step
# before/after plus its instances x threads sweep. About 8 minutes on an H100 with 16 cores (estimated:
# no GPU was lent to the session that wrote it), 2-3 of them generating the artifacts (cached in
# bench/.work/ for later runs); each part has a time limit, 13 minutes in all at worst.
#
#   PYTHON      the interpreter with onnxruntime-gpu and a CUDA torch (default: .venv/bin/python)
#   SERVER_BIN  bin/ of the models' Python environment (numpy<2, tokenizers, onnxruntime-gpu) when PYTHON
#               has numpy 2; the 24.10 stub garbles BYTES tensors under numpy 2 (default: PYTHON's)
#   DEVICE      gpu (default), or cpu for a dry run of the same sequence on any machine
#   TEXTS       corpus size of each part (default: 2000)
#
# Everything it prints is also in bench/.work/results/gpu-<time>-*.txt, with the JSON, markdown and PNG.
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
device=${DEVICE:-gpu}
texts=${TEXTS:-2000}
server=()
if [ -n "${SERVER_BIN:-}" ]; then server=(--server_bin "$SERVER_BIN"); fi
out=bench/.work/results
mkdir -p "$out"
stamp=$(date +%Y%m%d-%H%M%S)
status=0
part() {  # name, time limit (s), command...
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(date +%T), limit ${limit}s): $*"
  timeout --signal=TERM "$limit" "$@" 2>&1 | tee "$out/gpu-$stamp-$name.txt"
  local code=${PIPESTATUS[0]}
  if [ "$code" -ne 0 ]; then echo "== $name: exit $code"; status=1; fi
}
part table 390 "$py" bench/benchmark.py --device "$device" "${server[@]}" --texts "$texts" \
  --settings 1:1,8:16,32:64,128:64 --latency_calls 50
part capacity 240 "$py" bench/capacity.py --device "$device" "${server[@]}" --texts "$texts" \
  --texts_per_request 32 --point_seconds 8 --load_fractions 0.25,0.5,0.85,1,1.15,1.4 \
  --plot "$out/gpu-$stamp-capacity.png"
part tokenizer 150 "$py" bench/steps.py --texts "$texts" --texts_per_request 8,32,128 --repeat 3 \
  --instances 1,4,8 --threads auto,0 --passes 2 --rounds 1 --instance_texts_per_request 32
echo "== done ($(date +%T)); outputs: $out/gpu-$stamp-*"
exit $status
