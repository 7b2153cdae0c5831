#!/usr/bin/env bash
# Scale on the simulators (benches/bench.json: latency 0, boot 3 s, capacity 50,000 each; the
# default reconcile round of 2 s and status batch of 1,000): one requestMachines of 10,000 and
# 1,000 concurrent requestMachines of 10 through the HostFactory routes, polled until complete;
# then getRequestStatus of 100 requests x 100 machines and of 1 x 10,000, and
# requestReturnMachines of the 10,000. Prints each figure beside its target, with the
# reconciler's round times and status calls per round (from /metrics) and the service's peak
# RSS (VmHWM). Bounded: every wait has a deadline; about 2 minutes here.
#   benches/scale.sh
source "$(dirname "$0")/common.sh"
echo "start-up to ready: ${ready_ms} ms"
python3 benches/driver.py scale "$url" "$pid"
if grep -q . "$work/serve.log"; then
    echo "service warnings and errors (first 10 of $(wc -l < "$work/serve.log")):"
    head -10 "$work/serve.log"
fi
