#!/usr/bin/env bash
# Loopback load test, one run, side by side: a trivial axum handler built here (the ceiling,
# benches/ceiling/) and ohfp's routes, each with wrk (2 threads, 32 connections, 5 s), printed
# as req/s, p50, p99 and the ratio to the ceiling; then start-up time, memory and the shim's
# process-start-to-JSON time. Every run is bounded; nothing leaves 127.0.0.1.
#   benches/load.sh            (needs wrk and hyperfine: apt-get install wrk hyperfine)
source "$(dirname "$0")/common.sh" wrk hyperfine
secs=${LOAD_SECONDS:-5}
rss_idle=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)

# The ceiling: its own crate and target dir, not part of the ohfp package.
CARGO_TARGET_DIR="$HOME/.cache/ohfp/target-ceiling" \
    cargo build --release --quiet --manifest-path benches/ceiling/Cargo.toml
ceiling_port=$(free_port)
"$HOME/.cache/ohfp/target-ceiling/release/ohfp-ceiling" "$ceiling_port" &
pids+=($!)
wait_ready "http://127.0.0.1:$ceiling_port/health" $! /dev/null

# What the routes need: HostFactory requests of 1x10 and 100x10 machines, complete.
python3 benches/driver.py setup-load "$url" "$work"
lua() { # FILE PATH BODY
    printf 'wrk.method = "POST"\nwrk.path = "%s"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\n' "$2" "$3" > "$1"
}
lua "$work/status1.lua" /api/v1/hostfactory/getRequestStatus "$(cat "$work/status1.json")"
lua "$work/status100.lua" /api/v1/hostfactory/getRequestStatus "$(cat "$work/status100.json")"
lua "$work/operation.lua" /api/v1/providers/operations "$(cat "$work/operation.json")"

ceiling=
bench() { # LABEL WRK-ARGS...
    local label=$1; shift
    wrk -t2 -c32 -d"${secs}s" --latency "$@" | awk -v l="$label" -v c="$ceiling" '
        /Non-2xx/ {bad=$NF}
        /Requests\/sec/ {rps=$2}
        /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
        END {
            ratio = (c == "") ? "1.00" : sprintf("%.2f", rps / c)
            printf "| %-52s | %9.0f | %-8s | %-8s | %5s |%s\n", l, rps, p50, p99, ratio, bad ? " NON-2XX: " bad : ""
        }' | tee -a "$work/table"
}
echo "| route | req/s | p50 | p99 | ratio to ceiling |"
echo "|---|---|---|---|---|"
bench "trivial axum handler (ceiling)" "http://127.0.0.1:$ceiling_port/health" >/dev/null
ceiling=$(awk -F'|' '{gsub(/ /, "", $3); print $3}' "$work/table")
cat "$work/table"
bench "GET /health" "$url/health"
bench "GET /api/v1/providers/health" "$url/api/v1/providers/health"
bench "GET /api/v1/providers" "$url/api/v1/providers"
bench "POST getRequestStatus, 1 request of 10 machines" -s "$work/status1.lua" "$url"
bench "POST getRequestStatus, 100 requests of 10 machines" -s "$work/status100.lua" "$url"
bench "POST executeProviderOperation, GET_INSTANCE_STATUS of 10 on sim-primary" -s "$work/operation.lua" "$url"
rss_load=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
echo
echo "start-up to ready: ${ready_ms} ms; RSS idle $((rss_idle / 1024)) MiB, after the load $((rss_load / 1024)) MiB"
scripts=config/hostfactory/scripts
# The shim beside its floor: curl alone making the same call (every shim call runs curl once).
OHFP_URL=$url hyperfine --warmup 5 --runs 200 -N --export-json "$work/shim.json" \
    "$scripts/getRequestStatus.sh -f $work/status1.json" \
    "curl -s -X POST -H Content-Type:application/json --data-binary @$work/status1.json $url/api/v1/hostfactory/getRequestStatus" \
    >/dev/null
python3 - "$work/shim.json" <<'PY'
import json, sys
shim, curl = json.load(open(sys.argv[1]))["results"]
ms = lambda r, k: r[k] * 1000
print("shim getRequestStatus.sh (1 request of 10), process start to JSON printed: median %.1f ms, mean %.1f ms, max %.1f ms"
      % (ms(shim, "median"), ms(shim, "mean"), ms(shim, "max")))
print("curl alone, the same call: median %.1f ms, mean %.1f ms; the shim adds %.1f ms (median)"
      % (ms(curl, "median"), ms(curl, "mean"), ms(shim, "median") - ms(curl, "median")))
PY
