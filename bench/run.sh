#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md and prints the figures.
#
#   bench/run.sh           full run (release build; about 11 minutes on 2 cores, plus any build)
#   bench/run.sh --quick   every step with tiny counts and the debug build (for CI: the scripts
#                          and helpers must keep working; its figures mean nothing)
#
# Steps: 1 serving /traefik and /prometheus/targets vs nginx (wrk), 2 criterion (rendering,
# decisions), 3 webhook -> clone call latency, 3b webhook -> first request served by the new
# VM through Traefik, 3c 1 -> 5 ready VMs with serial and parallel clone calls, 3d the same with
# and without a warm pool and a warm pool's idle cost, 4 footprint (memory, idle CPU), 5 the sample
# workload `calculate` (wrk + bench/calculate.lua).
#
# Installs wrk and nginx with apt-get when missing. Every load is bounded in count and time and
# goes to 127.0.0.0/8 only; every process started here is stopped on exit (trap EXIT). Exits
# non-zero when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=full
case "${1:-}" in
  --quick) MODE=quick ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

if [[ $MODE == quick ]]; then
  PROFILE_DIR=debug; CARGO_PROFILE=()
  SIZES=(10 1000); RUNS=1; DURATION=1s; CONNS=32
  WEBHOOK_RUNS=5; SERVING_RUNS=1; SERVING_BOOT=1s
  SCALEOUT_ARGS=(--runs 1 --clone-call 200ms --boot 300ms)
  WARM_ARGS=(--runs 1 --clone-call 200ms --boot-delay 300ms --start-delay 200ms); WARM_IDLE=2s
  FOOTPRINTS=("1 2" "3 2"); FP_ARGS=(--hour 30s --speedup 15 --idle-window 2s --settle 1s --max-time 2m)
  CALC_RUNS=1; CALC_DURATION=1s
else
  PROFILE_DIR=release; CARGO_PROFILE=(--release)
  SIZES=(10 100 1000); RUNS=5; DURATION=2s; CONNS=32
  WEBHOOK_RUNS=200; SERVING_RUNS=10; SERVING_BOOT=8s
  SCALEOUT_ARGS=(--runs 5 --clone-call 2s --boot 3s)
  WARM_ARGS=(--runs 10 --clone-call 2s --boot-delay 3s --start-delay 1s); WARM_IDLE=30s
  FOOTPRINTS=("1 20" "50 20" "200 5"); FP_ARGS=(--hour 1h --speedup 60 --idle-window 30s --settle 5s --max-time 7m)
  CALC_RUNS=5; CALC_DURATION=4s
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/$PROFILE_DIR/idch-autoscaler
TOOL=$TARGET_DIR/$PROFILE_DIR/examples/bench_tool

say() { printf '\n== %s\n' "$*"; }
fail() { echo "bench/run.sh: $*" >&2; exit 1; }

# ---- tools --------------------------------------------------------------------------------------
install_missing() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
  if ((${#missing[@]})); then
    local sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    say "installing ${missing[*]} (apt-get)"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
install_missing
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ---- processes and clean-up ---------------------------------------------------------------------
WORK=$(mktemp -d /tmp/idch-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  local status=$?
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  if [[ -s $WORK/nginx/nginx.pid ]]; then kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null; fi
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  if ((status != 0)); then
    echo "bench/run.sh: failed (exit $status); logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops one process started here and forgets it.
stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local kept=()
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || kept+=("$p"); done
  PIDS=("${kept[@]}")
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

# Waits until `curl` gets an answer from $1 (at most 30 s).
wait_http() {
  for _ in $(seq 300); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  fail "nothing answers at $1"
}

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# One wrk run: prints "rps p50_ms p99_ms requests"; fails on socket errors or non-2xx answers.
wrk_once() { # url conns duration [wrk args...]
  local url=$1 conns=$2 duration=$3; shift 3
  local out
  out=$(wrk -t1 -c"$conns" -d"$duration" --timeout 10s --latency "$@" "$url") || fail "wrk failed on $url"
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
    echo "$out" >&2
    fail "errors while loading $url"
  fi
  awk '
    function ms(v) {
      if (v ~ /us$/) return (v + 0) / 1000
      if (v ~ /ms$/) return v + 0
      if (v ~ /s$/) return (v + 0) * 1000
      return v + 0
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    $1 == "Requests/sec:" { rps = $2 }
    $2 == "requests" && $3 == "in" { n = $1 }
    END { printf "%.1f %.3f %.3f %d\n", rps, p50, p99, n }' <<<"$out"
}

# "median (min-max)" of the numbers given, with printf format $1.
spread() {
  local fmt=$1; shift
  printf '%s\n' "$@" | sort -g | awk -v f="$fmt" '
    { a[NR] = $1 }
    END {
      m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
      printf f " (" f "-" f ")", m, a[1], a[NR]
    }'
}
median() {
  printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ---- machine ------------------------------------------------------------------------------------
say "machine"
echo "mode: $MODE"
echo "cpus: $(nproc); memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "kernel: $(uname -r); load average: $(cut -d' ' -f1-3 /proc/loadavg); wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $("$NGINX" -v 2>&1)"
echo "rustc: $(rustc --version)"
if awk '{ exit !($1 > 0.5) }' /proc/loadavg; then
  echo "warning: the machine is busy (load average above 0.5): figures will be noisy"
fi

# ---- build (once) -------------------------------------------------------------------------------
say "build ($PROFILE_DIR): the service binary and the bench helper"
cargo build "${CARGO_PROFILE[@]}" --quiet --bin idch-autoscaler --example bench_tool
[[ -x $BIN && -x $TOOL ]] || fail "build products missing: $BIN $TOOL"

SUMMARY=()

# ---- 1. serving the provider documents, against nginx -------------------------------------------
say "1. GET /traefik and GET /prometheus/targets vs nginx serving the same bytes (wrk -t1 -c$CONNS -d$DURATION, $RUNS runs each, interleaved)"
mkdir -p "$WORK/nginx" "$WORK/www"
chmod 755 "$WORK/www"
NGINX_PORT=$(free_port)
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon on;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  open_file_cache max=64 inactive=60s;
  client_body_temp_path $WORK/nginx/client_body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  default_type application/json;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/www;
  }
}
EOF
"$NGINX" -q -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" ||
  fail "nginx does not start (see $WORK/nginx/error.log)"
NGINX_BASE=http://127.0.0.1:$NGINX_PORT

printf '%-8s %-20s %-26s %-26s %-26s %-26s %s\n' backends document "service req/s" "nginx req/s" \
  "service p50/p99 ms" "nginx p50/p99 ms" "ratio"
for n in "${SIZES[@]}"; do
  dir=$WORK/serve-$n
  mkdir -p "$dir"
  "$TOOL" serve --backends "$n" --dir "$dir" --max-time 300s 2>"$dir/serve.log" &
  PIDS+=($!)
  serve_pid=$!
  for _ in $(seq 300); do [[ -s $dir/addr ]] && break; sleep 0.1; done
  [[ -s $dir/addr ]] || fail "bench_tool serve did not start: $(cat "$dir/serve.log")"
  svc=http://$(cat "$dir/addr")
  mkdir -p "$WORK/www/$n/prometheus"
  cp "$dir/traefik.json" "$WORK/www/$n/traefik"
  cp "$dir/targets.json" "$WORK/www/$n/prometheus/targets"
  chmod -R a+rX "$WORK/www"
  for doc in traefik prometheus/targets; do
    # Same bytes from both, or the comparison is void.
    cmp -s <(curl -sf "$svc/$doc") <(curl -sf "$NGINX_BASE/$n/$doc") || fail "$doc differs between the service and nginx"
    s_rps=() n_rps=() s_p50=() s_p99=() n_p50=() n_p99=() ratio=()
    for _ in $(seq "$RUNS"); do
      read -r r1 a1 b1 _ < <(wrk_once "$svc/$doc" "$CONNS" "$DURATION")
      read -r r2 a2 b2 _ < <(wrk_once "$NGINX_BASE/$n/$doc" "$CONNS" "$DURATION")
      s_rps+=("$r1") s_p50+=("$a1") s_p99+=("$b1") n_rps+=("$r2") n_p50+=("$a2") n_p99+=("$b2")
      ratio+=("$(awk -v a="$r1" -v b="$r2" 'BEGIN { printf "%.3f", a / b }')")
    done
    printf '%-8s %-20s %-26s %-26s %-26s %-26s %s\n' "$n" "/$doc" "$(spread %.0f "${s_rps[@]}")" \
      "$(spread %.0f "${n_rps[@]}")" "$(median "${s_p50[@]}")/$(median "${s_p99[@]}")" \
      "$(median "${n_p50[@]}")/$(median "${n_p99[@]}")" "$(spread %.2f "${ratio[@]}")"
    if [[ $n == 1000 ]]; then
      SUMMARY+=("serve 1000 backends /$doc: ratio to nginx $(median "${ratio[@]}") (target >= 0.8), p99 $(median "${s_p99[@]}") ms at $CONNS connections (target < 2 ms)")
    fi
  done
  if [[ $n == 1000 ]]; then
    # Latency without queueing: one connection, one request at a time.
    for doc in traefik prometheus/targets; do
      s_p50=() s_p99=() n_p50=() n_p99=()
      for _ in $(seq "$RUNS"); do
        read -r _ a1 b1 _ < <(wrk_once "$svc/$doc" 1 "$DURATION")
        read -r _ a2 b2 _ < <(wrk_once "$NGINX_BASE/$n/$doc" 1 "$DURATION")
        s_p50+=("$a1") s_p99+=("$b1") n_p50+=("$a2") n_p99+=("$b2")
      done
      printf '%-8s %-20s %-53s %-26s %s\n' "$n" "/$doc" "one connection (-c1): p50/p99 ms ->" \
        "$(median "${s_p50[@]}")/$(median "${s_p99[@]}")" "nginx $(median "${n_p50[@]}")/$(median "${n_p99[@]}")"
      SUMMARY+=("serve 1000 backends /$doc, one connection: p99 $(median "${s_p99[@]}") ms (nginx $(median "${n_p99[@]}") ms)")
    done
  fi
  stop_pid "$serve_pid"
done
kill "$(cat "$WORK/nginx/nginx.pid")" && rm -f "$WORK/nginx/nginx.pid"

# ---- 2. criterion: rendering and decisions ------------------------------------------------------
if [[ $MODE == quick ]]; then
  say "2. criterion benches, test mode (each benchmark runs once)"
  cargo test --quiet --bench render 2>&1 | tail -n 20
else
  say "2. criterion: rendering both documents (10 .. 10,000 backends), State::publish, decide"
  # A fresh criterion home: no comparison with whatever an earlier run left in target/criterion.
  CRITERION_HOME=$WORK/criterion cargo bench --quiet --bench render -- --noplot >"$WORK/criterion.txt" 2>&1 ||
    { cat "$WORK/criterion.txt" >&2; fail "cargo bench failed"; }
  grep -vE '^(Benchmarking|Found|  [0-9]+ \(|Gnuplot|WARNING)' "$WORK/criterion.txt" | grep -v '^ *$' || true
  for id in render/traefik/1000 render/prometheus_targets/1000 decide/scale_up_accepted publish/1000; do
    line=$(grep -A1 -E "^$id( |$)" "$WORK/criterion.txt" | grep -m1 'time:' | sed 's/.*time: *//')
    SUMMARY+=("criterion $id: $line")
  done
fi

# ---- 3. webhook to clone call -------------------------------------------------------------------
say "3. scale-up webhook arrival -> clone call at the simulator ($WEBHOOK_RUNS runs)"
"$TOOL" webhook --service-bin "$BIN" --dir "$WORK" --runs "$WEBHOOK_RUNS" --max-time 180s | tee "$WORK/webhook.txt"
SUMMARY+=("webhook -> clone: $(grep 'clone call' "$WORK/webhook.txt" | cut -d: -f2-) (target p99 < 5 ms)")

# ---- 3b. webhook to the first request the new VM serves through Traefik -------------------------
TRAEFIK=${TRAEFIK:-$(command -v traefik || echo "$ROOT/.venv-peers/bin/traefik")}
[[ -x $TRAEFIK ]] || fail "Traefik not found: run scripts/install-peers.sh (or set TRAEFIK)"
say "3b. scale-up webhook -> first request served by the new VM through Traefik ($SERVING_RUNS runs, boot $SERVING_BOOT)"
"$TOOL" serving --service-bin "$BIN" --traefik "$TRAEFIK" --dir "$WORK" --runs "$SERVING_RUNS" --boot-delay "$SERVING_BOOT" --max-time 6m | tee "$WORK/serving.txt"
SUMMARY+=("app up -> served through Traefik: $(grep 'app up -> first request' "$WORK/serving.txt" | cut -d: -f2-) (target p50 < 1.5 s)")
SUMMARY+=("webhook -> served (boot $SERVING_BOOT): $(grep 'webhook -> first request' "$WORK/serving.txt" | cut -d: -f2-)")

# ---- 3c. parallel scale-out: 1 -> 5 ready ------------------------------------------------------
say "3c. PUT desired 5 -> 5 ready VMs, max_concurrent_clones 1 and 3 (${SCALEOUT_ARGS[*]})"
"$TOOL" scaleout --service-bin "$BIN" --dir "$WORK" --concurrency 1,3 "${SCALEOUT_ARGS[@]}" | tee "$WORK/scaleout.txt"
while read -r line; do SUMMARY+=("$line"); done < <(grep '^1 -> 5 ready' "$WORK/scaleout.txt")

# ---- 3d. the warm pool: webhook to serving with and without a warm clone; its idle cost ----------
say "3d. scale-up webhook -> first request served, without and with a warm pool (${WARM_ARGS[*]})"
"$TOOL" serving --service-bin "$BIN" --traefik "$TRAEFIK" --dir "$WORK" "${WARM_ARGS[@]}" --max-time 10m | tee "$WORK/cold.txt"
"$TOOL" serving --service-bin "$BIN" --traefik "$TRAEFIK" --dir "$WORK" "${WARM_ARGS[@]}" --warm 1 --max-time 10m | tee "$WORK/warm.txt"
SUMMARY+=("webhook -> served, no warm pool (${WARM_ARGS[*]}): $(grep 'webhook -> first request' "$WORK/cold.txt" | cut -d: -f2-)")
SUMMARY+=("webhook -> served, a warm clone: $(grep 'webhook -> first request' "$WORK/warm.txt" | cut -d: -f2-) (target start delay + 1.5 s)")
say "3d. a warm pool of 2 idle for $WARM_IDLE: what the cost endpoint says"
"$TOOL" serving --service-bin "$BIN" --traefik "$TRAEFIK" --dir "$WORK" "${WARM_ARGS[@]}" --runs 1 --warm 2 --idle "$WARM_IDLE" --max-time 5m | tee "$WORK/warmcost.txt"
SUMMARY+=("$(grep '^warm pool of' "$WORK/warmcost.txt")")

# ---- 4. footprint -------------------------------------------------------------------------------
for fp in "${FOOTPRINTS[@]}"; do
  read -r pools vms <<<"$fp"
  say "4. footprint: $pools pool(s) x $vms VMs"
  mkdir -p "$WORK/fp-$pools"
  "$TOOL" footprint --service-bin "$BIN" --dir "$WORK/fp-$pools" --pools "$pools" --vms "$vms" "${FP_ARGS[@]}" |
    tee "$WORK/fp-$pools.txt"
  SUMMARY+=("footprint $pools x $vms: aged VmRSS $(awk '/footprint_aged_rss_mib/ { print $NF }' "$WORK/fp-$pools.txt") MiB, idle VmRSS $(awk '/footprint_idle_rss_mib/ { print $NF }' "$WORK/fp-$pools.txt") MiB, idle CPU $(awk '/footprint_idle_cpu_pct/ { print $NF }' "$WORK/fp-$pools.txt")% of a core (targets < 30 MiB, < 1%)")
done

# ---- 5. the sample workload ---------------------------------------------------------------------
say "5. calculate --workers 2 ($PROFILE_DIR build) under wrk -t1 (bench/calculate.lua), $CALC_RUNS runs of $CALC_DURATION"
CALC_PORT=$(free_port)
"$BIN" calculate --listen "127.0.0.1:$CALC_PORT" --workers 2 --name bench >"$WORK/calculate.log" 2>&1 &
PIDS+=($!)
calc_pid=$!
wait_http "http://127.0.0.1:$CALC_PORT/healthz"
printf '%-34s %-5s %-22s %-16s %-16s %s\n' body conns "req/s" "p50 ms" "p99 ms" "CPU ms/request"
for body in 5 mixed; do
  for conns in 2 8; do
    rps=() p50=() p99=() cost=()
    for _ in $(seq "$CALC_RUNS"); do
      t0=$(cpu_ticks "$calc_pid")
      if [[ $body == mixed ]]; then export CALC_NUMBER=; else export CALC_NUMBER=$body; fi
      read -r r a b n < <(wrk_once "http://127.0.0.1:$CALC_PORT/calculate" "$conns" "$CALC_DURATION" -s bench/calculate.lua)
      t1=$(cpu_ticks "$calc_pid")
      rps+=("$r") p50+=("$a") p99+=("$b")
      cost+=("$(awk -v t="$((t1 - t0))" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", n ? t * 1000 / hz / n : 0 }')")
    done
    label='{"number": 5}'
    [[ $body == mixed ]] && label='{"number": 1..14 in turn}'
    printf '%-34s %-5s %-22s %-16s %-16s %s\n' "$label" "$conns" "$(spread %.0f "${rps[@]}")" \
      "$(median "${p50[@]}")" "$(median "${p99[@]}")" "$(median "${cost[@]}")"
    if [[ $conns == 8 ]]; then
      SUMMARY+=("calculate $label at saturation (8 connections): $(median "${rps[@]}") req/s, p50 $(median "${p50[@]}") ms, p99 $(median "${p99[@]}") ms, $(median "${cost[@]}") CPU-ms per request")
    fi
  done
done
stop_pid "$calc_pid"

# ---- summary ------------------------------------------------------------------------------------
say "summary ($MODE)"
[[ $MODE == quick ]] && echo "(quick mode: debug build and tiny counts; the figures are not meaningful)"
printf '%s\n' "${SUMMARY[@]}"
