#!/usr/bin/env bash
# Loopback load test of a release build: start-up time, idle memory, throughput of query
# routes next to a trivial route (/health), a HostFactory status call over HTTP, and the
# process-start-to-JSON time of a shim. Every run is bounded; nothing leaves 127.0.0.1.
#   benches/load.sh            (needs wrk and hyperfine: apt-get install wrk hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk hyperfine curl; do
    command -v "$tool" >/dev/null || { echo "load.sh: $tool is needed (apt-get install wrk hyperfine curl)" >&2; exit 2; }
done
cargo build --release --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/ohfp"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
sed -e "s#127.0.0.1:8000#127.0.0.1:$port#" -e "s#data/ohfp.db#$work/ohfp.db#" -e "s#\"dir\": \"logs\"#\"dir\": null#" \
    -e 's#"level": "info"#"level": "warn"#' -e 's#"latency_ms": \[[0-9, ]*\]#"latency_ms": 0#' \
    config/default.json > "$work/config.json"
start=$(date +%s%N)
"$bin" serve --config "$work/config.json" 2>"$work/serve.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 2000); do
    curl -sf "$url/ready" >/dev/null && break
    kill -0 $pid 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.005
done
ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
sleep 1
rss_idle=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
echo "start-up to ready: ${ready_ms} ms; idle RSS: $((rss_idle / 1024)) MiB"

scripts=config/hostfactory/scripts
req=$(printf '{"template": {"templateId": "OnDemand-Standard", "machineCount": 3}}' | OHFP_URL=$url $scripts/requestMachines.sh)
id=$(printf '%s' "$req" | sed 's/.*"requestId":"\([^"]*\)".*/\1/')
printf '{"requests": [{"requestId": "%s"}]}' "$id" > "$work/status.json"
cat > "$work/status.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"requests": [{"requestId": "$id"}]}'
wrk.headers["Content-Type"] = "application/json"
LUA

bench() {
    local label=$1; shift
    wrk -t2 -c32 -d10s --latency "$@" | awk -v l="$label" '
        /Requests\/sec/ {rps=$2}
        /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
        END {printf "%-42s %10s req/s   p50 %-8s p99 %s\n", l, rps, p50, p99}'
}
bench "GET /health (trivial handler)" "$url/health"
bench "GET /api/v1/providers" "$url/api/v1/providers"
bench "GET /api/v1/providers/health" "$url/api/v1/providers/health"
bench "POST /api/v1/hostfactory/getRequestStatus" -s "$work/status.lua" "$url/api/v1/hostfactory/getRequestStatus"
rss_load=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
echo "RSS after load: $((rss_load / 1024)) MiB"
OHFP_URL=$url hyperfine --warmup 5 --runs 200 -N --export-json "$work/shim.json" \
    "$scripts/getRequestStatus.sh -f $work/status.json" >/dev/null
python3 -c "import json; r=json.load(open('$work/shim.json'))['results'][0]; print('shim getRequestStatus.sh, process start to JSON printed: mean %.1f ms, max %.1f ms' % (r['mean']*1000, r['max']*1000))"
