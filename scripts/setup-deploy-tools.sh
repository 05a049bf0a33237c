#!/usr/bin/env bash
# Tools the deployment tests run (tests/test_kubernetes.py, tests/test_prometheus.py):
# - Prometheus 2.42 and promtool, Debian's `prometheus` package (needs root and apt). Its postinst
#   would start the packaged service; the install runs under a policy-rc.d that forbids starting
#   services, and any prometheus the package still left running is stopped.
# - checkov, pinned, in its own venv (.tools/checkov): its pins clash with the project's .venv.
# kubectl (for `kubectl kustomize`) comes with the machine; without it the manifest tests skip and say so.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
CHECKOV_VERSION=3.3.30

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup-deploy-tools: no prometheus/promtool and cannot apt-get install them (not root on Debian);" \
         "the Prometheus tests will skip" >&2
  else
    export DEBIAN_FRONTEND=noninteractive
    policy=/usr/sbin/policy-rc.d
    restore=""
    if [ ! -e "$policy" ] || ! grep -qx 'exit 101' "$policy"; then
      [ -e "$policy" ] && { cp -p "$policy" "$policy.sat-triton-saved"; restore=saved; } || restore=remove
      printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
    fi
    apt_get() { apt-get -o DPkg::Lock::Timeout=300 "$@"; }
    if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      apt_get update -qq
    fi
    # stale package lists name versions the mirror no longer has: update once and retry
    apt_get install -y -qq --no-install-recommends prometheus >/dev/null \
      || { apt_get update -qq && apt_get install -y -qq --no-install-recommends prometheus >/dev/null; }
    case "$restore" in
      saved) mv "$policy.sat-triton-saved" "$policy" ;;
      remove) rm -f "$policy" ;;
    esac
    # The package's service runs as user prometheus; ours (in the tests) never do.
    if pgrep -u prometheus -x prometheus >/dev/null; then
      (command -v systemctl >/dev/null && systemctl disable --now prometheus) || service prometheus stop || true
    fi
  fi
fi

if [ ! -x .tools/checkov/bin/checkov ] || ! .tools/checkov/bin/checkov --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  rm -rf .tools/checkov
  "$python" -m venv .tools/checkov
  .tools/checkov/bin/python -m pip install --quiet --upgrade pip
  .tools/checkov/bin/python -m pip install --quiet "checkov==$CHECKOV_VERSION"
fi

echo "deploy tools: $(promtool --version 2>/dev/null | head -1 || echo 'no promtool')," \
     "checkov $(.tools/checkov/bin/checkov --version)," \
     "$(kubectl version --client 2>/dev/null | grep -i kustomize || echo 'no kubectl')"
