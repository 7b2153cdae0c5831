# Shared by benches/load.sh and benches/scale.sh (sourced): builds the release binary, starts
# `ohfp serve` on a free loopback port over the embedded default with benches/bench.json laid
# over it (simulators with latency 0, boot 3 s, capacity 50,000 each), and stops it on exit.
# The database is a SQLite file in a temp dir, or OHFP_BENCH_DATABASE_URL (see below).
# Sets: bin, work, url, pid.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in "$@" curl python3; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is needed (apt-get install wrk hyperfine curl python3)" >&2; exit 2; }
done
cargo build --release --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/ohfp"
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
url="http://127.0.0.1:$port"
# OHFP_BENCH_DATABASE_URL=postgres://… runs the service on that (empty) PostgreSQL database
# instead of a SQLite file in the work dir.
if [ -n "${OHFP_BENCH_DATABASE_URL:-}" ]; then
    printf '{"database": {"path": "%s/ohfp.db", "url": "%s"}}\n' "$work" "$OHFP_BENCH_DATABASE_URL" > "$work/run.json"
else
    printf '{"database": {"path": "%s/ohfp.db"}}\n' "$work" > "$work/run.json"
fi
pids=()
stop_all() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap stop_all EXIT
wait_ready() { # URL PID LOG
    for _ in $(seq 4000); do
        curl -sf "$1" >/dev/null && return 0
        kill -0 "$2" 2>/dev/null || { cat "$3" >&2; exit 1; }
        sleep 0.005
    done
    echo "$0: $1 never answered" >&2; exit 1
}
start=$(date +%s%N)
"$bin" serve --config config/default.json --config benches/bench.json --config "$work/run.json" \
    --bind "127.0.0.1:$port" 2>"$work/serve.log" &
pid=$!
pids+=("$pid")
wait_ready "$url/ready" "$pid" "$work/serve.log"
ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
