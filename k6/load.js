// k6 load profile for idch-autoscaler: the original setup's ramping-arrival-rate test.
// About 1 request per second, a ramp up to the peak, a hold, a ramp back down to about 1 rps
// and a hold, so the pool scales up and then back down. Self-contained (no remote imports):
// k6 runs offline.
//
//   k6 run --no-usage-report --address 127.0.0.1:0 k6/load.js
//   k6 run --no-usage-report --address 127.0.0.1:0 \
//     -e TARGET_URL=http://127.0.0.1:8000/calculate -e PEAK_RATE=60 -e HOLD=10m k6/load.js
//
// Environment (-e NAME=value), with defaults:
//   TARGET_URL     http://127.0.0.1:8000/calculate   (Traefik's web entry point, traefik/traefik.yml)
//   METHOD         POST                             (GET for an app without a JSON body)
//   NUMBER         random 1..100 per request        (the {"number": n} sent to /calculate)
//   BASE_RATE      1     requests per second at the start and the end
//   PEAK_RATE      50    requests per second at the peak
//   WARMUP         1m    hold at BASE_RATE before the ramp
//   RAMP_UP        2m    BASE_RATE -> PEAK_RATE
//   HOLD           5m    at PEAK_RATE
//   RAMP_DOWN      2m    PEAK_RATE -> BASE_RATE
//   COOLDOWN       5m    at BASE_RATE (long enough for the scale-down rule to fire)
//   PRE_VUS        10    VUs allocated up front
//   MAX_VUS        200   VUs at most (a slow pool needs more VUs for the same rate)
//   TIMEOUT        30s   per request
//   GRACEFUL_STOP  30s   how long requests still running at the end may take
//   P95_MS         2000  threshold: 95% of requests faster than this
//   MAX_FAILED     0.01  threshold: at most this fraction of failed requests
//   SUMMARY_FILE   k6-summary.json   the JSON summary (handleSummary); "" for none

import http from 'k6/http';
import { check } from 'k6';

function env(name, fallback) {
  const v = __ENV[name];
  return v === undefined || v === '' ? fallback : v;
}

function num(name, fallback) {
  const v = Number(env(name, fallback));
  if (!Number.isFinite(v) || v < 0) {
    throw new Error(`${name} must be a non-negative number, not ${__ENV[name]}`);
  }
  return v;
}

const TARGET_URL = env('TARGET_URL', 'http://127.0.0.1:8000/calculate');
const METHOD = env('METHOD', 'POST').toUpperCase();
const NUMBER = env('NUMBER', '');
const BASE_RATE = num('BASE_RATE', 1);
const PEAK_RATE = num('PEAK_RATE', 50);
const SUMMARY_FILE = env('SUMMARY_FILE', 'k6-summary.json');

export const options = {
  scenarios: {
    load: {
      executor: 'ramping-arrival-rate',
      startRate: BASE_RATE,
      timeUnit: '1s',
      preAllocatedVUs: num('PRE_VUS', 10),
      maxVUs: num('MAX_VUS', 200),
      gracefulStop: env('GRACEFUL_STOP', '30s'),
      stages: [
        { target: BASE_RATE, duration: env('WARMUP', '1m') },
        { target: PEAK_RATE, duration: env('RAMP_UP', '2m') },
        { target: PEAK_RATE, duration: env('HOLD', '5m') },
        { target: BASE_RATE, duration: env('RAMP_DOWN', '2m') },
        { target: BASE_RATE, duration: env('COOLDOWN', '5m') },
      ],
    },
  },
  thresholds: {
    http_req_failed: [`rate<${num('MAX_FAILED', 0.01)}`],
    http_req_duration: [`p(95)<${num('P95_MS', 2000)}`],
    checks: ['rate>0.99'],
  },
};

export default function () {
  const n = NUMBER !== '' ? Number(NUMBER) : 1 + Math.floor(Math.random() * 100);
  const params = {
    headers: { 'Content-Type': 'application/json' },
    timeout: env('TIMEOUT', '30s'),
    tags: { name: 'calculate' },
  };
  const res = METHOD === 'GET'
    ? http.get(TARGET_URL, params)
    : http.request(METHOD, TARGET_URL, JSON.stringify({ number: n }), params);
  check(res, {
    'status is 200': (r) => r.status === 200,
  });
}

function metric(data, name, field) {
  const m = data.metrics[name];
  return m && m.values && m.values[field] !== undefined ? m.values[field] : 0;
}

// The JSON summary is written to SUMMARY_FILE (no remote textSummary import: offline), and a few
// lines go to stdout.
export function handleSummary(data) {
  const failedThresholds = Object.entries(data.metrics)
    .filter(([, m]) => m.thresholds && Object.values(m.thresholds).some((t) => !t.ok))
    .map(([name]) => name);
  const lines = [
    `target:      ${METHOD} ${TARGET_URL}`,
    `requests:    ${metric(data, 'http_reqs', 'count')} (${metric(data, 'http_reqs', 'rate').toFixed(2)}/s), ` +
      `dropped iterations: ${metric(data, 'dropped_iterations', 'count')}`,
    `failed:      ${(100 * metric(data, 'http_req_failed', 'rate')).toFixed(2)}%`,
    `checks:      ${metric(data, 'checks', 'passes')} passed, ${metric(data, 'checks', 'fails')} failed`,
    `latency:     p50 ${metric(data, 'http_req_duration', 'med').toFixed(1)} ms, ` +
      `p95 ${metric(data, 'http_req_duration', 'p(95)').toFixed(1)} ms, ` +
      `max ${metric(data, 'http_req_duration', 'max').toFixed(1)} ms`,
    `thresholds:  ${failedThresholds.length === 0 ? 'all passed' : 'FAILED: ' + failedThresholds.join(', ')}`,
  ];
  const out = { stdout: lines.join('\n') + '\n' };
  if (SUMMARY_FILE !== '') {
    out[SUMMARY_FILE] = JSON.stringify(data, null, 2);
  }
  return out;
}
