#!/usr/bin/env bash
# Offline checks of the deployment files (Dockerfile, docker-compose.yml, deploy/): installs
# the pinned tools of scripts/check-deploy-requirements.txt into target/deploy-venv (reused
# while the list is unchanged), builds the binary, and runs scripts/check_deploy.py, which
# prints one line per check and exits non-zero on any failure. A tool that cannot be
# installed fails the run; only systemd-analyze may be missing ("not available, skipped").
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-deploy: $*" >&2; exit 1; }

venv=target/deploy-venv
requirements=scripts/check-deploy-requirements.txt
stamp="$venv/requirements.sha256"
wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "check-deploy: installing the check tools into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" || fail "cannot create a virtualenv (python3 -m venv; on Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" \
    || fail "cannot install the check tools of $requirements"
  echo "$wanted" > "$stamp"
fi

echo "check-deploy: building the binary"
nice -n 10 cargo build --quiet --bin leadlink || fail "cargo build failed"

"$venv/bin/python" scripts/check_deploy.py --repo . --binary target/debug/leadlink
