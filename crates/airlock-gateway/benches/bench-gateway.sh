#!/usr/bin/env bash
# Added latency of the gateway, measured against the direct path in the same run.
#
#   crates/airlock-gateway/benches/bench-gateway.sh            # from the workspace root
#   RATE=1000 DURATION=20 BODY_KB=100 crates/airlock-gateway/benches/bench-gateway.sh
#
# Needs: oha (cargo install oha --locked --no-default-features --features rustls; 1.16.0 builds
# with rustc 1.95) or wrk (apt-get install wrk), curl,
# python3. Everything listens on 127.0.0.1 only.
set -euo pipefail

RATE=${RATE:-1000}            # requests per second (oha -q)
DURATION=${DURATION:-20}      # seconds per run
BODY_KB=${BODY_KB:-100}       # request body size
CONNS=${CONNS:-32}
TURN=${TURN:-resend}          # resend: the same body every time; new: a new last message each request
TTFB_N=${TTFB_N:-300}
WARMUP=${WARMUP:-2}           # seconds of unmeasured load against each target first (0: none)
MOCK=127.0.0.1:${MOCK_PORT:-18801}
GW=127.0.0.1:${GW_PORT:-18800}
TARGET=${CARGO_TARGET_DIR:-target}
PROFILE=${PROFILE:-release}   # PROFILE=dev for a quick (unrepresentative) run
CONFIG=${CONFIG:-}             # an airlock.toml for the gateway (e.g. one with [audit] enabled = false)
PIN=${PIN:-0}                 # PIN=1: load generator and mock on CPU 0, the gateway alone on CPU 1
LOADGEN=${LOADGEN:-oha}        # oha when installed (open loop); LOADGEN=wrk for the closed-loop wrk
GATEWAY_BIN=${GATEWAY_BIN:-}  # another build of the gateway example (A/B runs against a copy)
if [ "$PIN" = 1 ]; then
  ON_LOAD="taskset -c 0"; ON_GW="taskset -c 1"
else
  ON_LOAD=""; ON_GW=""
fi
BIN="$TARGET/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/examples"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [ -n "$GATEWAY_BIN" ] && [ -x "$BIN/mock_upstream" ]; then
  : # A/B against copied binaries: no build (a build here would also pick up unrelated edits)
else
  cargo build --profile "$PROFILE" -q -p airlock-gateway --example mock_upstream --example gateway
fi
$ON_LOAD "$BIN/mock_upstream" "$MOCK" 2>/dev/null &
AIRLOCK_BENCH_CONFIG=$CONFIG $ON_GW "${GATEWAY_BIN:-$BIN/gateway}" "$GW" "$WORK/data" "openai=http://$MOCK/v1" 2>/dev/null &
GW_PID=$!
sleep 1
kill -0 "$GW_PID" 2>/dev/null || { echo "the gateway did not start (port $GW in use?)" >&2; exit 1; }

cat crates/*/src/*.rs > "$WORK/code.txt"
python3 - "$BODY_KB" "$WORK" <<'PY'
import json, sys
kb, work = int(sys.argv[1]), sys.argv[2]
# An agent conversation: a system prompt, then turns whose tool results are ~4 KB of source
# code, up to the requested size. The last user message ends with NONCE, which the "new turn"
# mode replaces per request (agents resend the conversation with one new message each turn).
code = open(__import__("os").path.join(sys.argv[2], "code.txt")).read()
def body(stream):
    msgs = [{"role": "system", "content": "You are a coding agent. Follow the user's instructions."}]
    b = {"model": "gpt-5", "stream": stream, "messages": msgs}
    i = 0
    while len(json.dumps(b)) < kb * 1024 - 6000:
        chunk = code[(i * 4000) % max(1, len(code) - 4000):][:4000]
        msgs.append({"role": "user", "content": f"Read part {i} of src/lib.rs"})
        msgs.append({"role": "assistant", "content": f"Here is part {i}:\n{chunk}"})
        i += 1
    msgs.append({"role": "user", "content": "Now fix the bug in it. NONCE"})
    return json.dumps(b, separators=(",", ":"))
open(f"{work}/body.json", "w").write(body(False))
open(f"{work}/stream.json", "w").write(body(True))
# For oha's -Z (one body per line, cycled): 64 distinct last messages, as the wrk script makes.
import random
plain = body(False)
tag = random.randrange(10**9)
with open(f"{work}/bodies.lines", "w") as f:
    for i in range(64):
        f.write(plain.replace("NONCE", f"{tag}-{i}") + "\n")
PY
echo "# profile: $PROFILE; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# body: $(wc -c < "$WORK/body.json") bytes ($TURN), rate $RATE/s, $DURATION s, $CONNS connections, pinned: $PIN, config: ${CONFIG:-none}"

pct() { # name url
  if command -v oha >/dev/null && [ "$LOADGEN" != wrk ]; then
    # Open loop: requests are sent on schedule at RATE, and --latency-correction counts a
    # request's latency from when it was due, not from when a connection was free (wrk's
    # closed loop hides queueing behind slow answers: "coordinated omission").
    if [ "$TURN" = new ]; then BODY=(-Z "$WORK/bodies.lines"); else BODY=(-D "$WORK/body.json"); fi
    $ON_LOAD oha --no-tui -z "${DURATION}s" -q "$RATE" --latency-correction -c "$CONNS" -m POST \
      -H 'content-type: application/json' -H 'user-agent: QwenCode/0.24.4 (linux; x64)' \
      "${BODY[@]}" --output-format json "$2" > "$WORK/$1.json"
    python3 - "$1" "$WORK/$1.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
p = d["latencyPercentiles"]; s = d["summary"]
codes = d.get("statusCodeDistribution", {})
print(f"{sys.argv[1]:8} rps={s['requestsPerSec']:.0f} p50={p['p50']*1000:.3f}ms p99={p['p99']*1000:.3f}ms p99.9={p['p99.9']*1000:.3f}ms status={codes}")
PY
  else
    cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["user-agent"] = "QwenCode/0.24.4 (linux; x64)"
local f = io.open("$WORK/body.json", "rb"); wrk.body = f:read("*a"); f:close()
function delay() return math.floor($CONNS * 1000 / $RATE) end
local pre, post = wrk.body:match("^(.*)NONCE(.*)$")
-- Built once per thread: concatenating a megabyte per request made wrk itself the bottleneck.
-- 64 distinct last messages per thread, cycled (each is shorter than the detection cache's
-- minimum, so the gateway scans it on every request either way).
local reqs, n = {}, 0
if "$TURN" == "new" then
  function init(args)
    local tag = tostring(math.random(1e9))
    for i = 1, 64 do
      reqs[i] = wrk.format(nil, nil, nil, pre .. tag .. "-" .. tostring(i) .. post)
    end
  end
  function request()
    n = n % #reqs + 1
    return reqs[n]
  end
end
LUA
    $ON_LOAD wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/post.lua" "$2" | sed "s/^/$1 /" | grep -E "Requests/sec|50%|99%|Non-2xx"
  fi
}

echo "## non-streaming, ${BODY_KB} KB bodies at ${RATE} req/s"
# Warm-up, not measured: the same load for WARMUP seconds against each target first. A fresh
# gateway compiles a rule's Unicode-mode regex the first time a window holding non-ASCII text
# needs it (about 50-90 ms on the first 1 MB body of this workspace's sources, once per
# process); the figures below are the steady state, and docs/benchmarks.md gives the first
# request's time separately.
first() { curl -s -o /dev/null -w '%{time_total}' -H 'content-type: application/json' \
  -H 'user-agent: QwenCode/0.24.4 (linux; x64)' --data-binary "@$WORK/body.json" "$1" |
  awk '{printf "%.2f ms", $1 * 1000}'; }
echo "first request: direct $(first "http://$MOCK/v1/chat/completions"), gateway $(first "http://$GW/v1/chat/completions")"
if [ "$WARMUP" -gt 0 ]; then
  DURATION=$WARMUP pct warmup "http://$MOCK/v1/chat/completions" > /dev/null
  DURATION=$WARMUP pct warmup "http://$GW/v1/chat/completions" > /dev/null
fi
pct direct "http://$MOCK/v1/chat/completions"
cpu() { awk '{print $14 + $15}' "/proc/$GW_PID/stat"; } # utime + stime, clock ticks
CPU0=$(cpu)
pct gateway "http://$GW/v1/chat/completions"
CPU1=$(cpu)
echo "gateway CPU: $(( (CPU1 - CPU0) * 1000 / $(getconf CLK_TCK) )) ms for the run (divide by requests for CPU per request)"
echo "gateway RSS peak: $(grep VmHWM /proc/$GW_PID/status | awk '{print $2/1024 " MiB"}')"
# The gateway's own view (its histograms): time spent in Airlock before forwarding, and the
# hold of each answer until its audit record is committed. Bucket bounds, so "≤ x".
curl -s "http://$GW/metrics" | python3 -c '
import re, sys
h = {}
for line in sys.stdin:
    m = re.match(r"(airlock_gateway_overhead_seconds|airlock_audit_commit_wait_seconds)_bucket\{(?:api=\"[^\"]*\",)?le=\"([^\"]+)\"\} (\d+)", line)
    if m:
        d = h.setdefault(m.group(1), {})
        le = float("inf") if m.group(2) == "+Inf" else float(m.group(2))
        d[le] = d.get(le, 0) + int(m.group(3))
for name, b in h.items():
    total = b.get(float("inf"), 0)
    if not total:
        continue
    def q(p):
        for le in sorted(b):
            if b[le] >= p * total:
                return "%g ms" % (le * 1000) if le != float("inf") else "inf"
    print("%s: p50 <= %s, p99 <= %s (n=%d)" % (name, q(0.5), q(0.99), total))
'


echo "## streaming time to first byte (${TTFB_N} sequential requests each)"
ttfb() {
  for _ in $(seq "$TTFB_N"); do
    $ON_LOAD curl -s -o /dev/null -w '%{time_starttransfer}\n' -H 'content-type: application/json' \
      -H 'user-agent: QwenCode/0.24.4 (linux; x64)' --data-binary "@$WORK/stream.json" "$2"
  done > "$WORK/$1.ttfb"
  python3 - "$1" "$WORK/$1.ttfb" <<'PY'
import sys
v = sorted(float(x) * 1000 for x in open(sys.argv[2]) if x.strip())
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print(f"{sys.argv[1]:8} ttfb p50={q(0.5):.3f}ms p99={q(0.99):.3f}ms n={len(v)}")
PY
}
ttfb direct "http://$MOCK/v1/chat/completions"
ttfb gateway "http://$GW/v1/chat/completions"
