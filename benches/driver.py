"""The HostFactory side of benches/load.sh and benches/scale.sh: makes requests through the
HostFactory routes, waits for them, and (scale) times and samples the service. Standard library
only; every wait has a deadline.

    python3 benches/driver.py setup-load URL WORKDIR
    python3 benches/driver.py scale URL PID
"""

import http.client
import json
import math
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

HF = "/api/v1/hostfactory"
TEMPLATE = "Unlimited-Batch"  # maxNumber -1: the bench config's simulators bound it


class Client:
    """One keep-alive connection per thread."""

    def __init__(self, url):
        u = urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(self.host, self.port, timeout=120)
            self.local.conn = c
        return c

    def call(self, method, path, body=None):
        """(status, answer bytes, seconds to the whole answer)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(2):
            c = self.conn()
            try:
                started = time.perf_counter()
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                raw = r.read()
                return r.status, raw, time.perf_counter() - started
            except (ConnectionError, http.client.HTTPException, OSError):
                c.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def hf(self, call, body):
        status, raw, took = self.call("POST", f"{HF}/{call}", body)
        if status != 200:
            raise SystemExit(f"{call} answered {status}: {raw[:300]!r}")
        return json.loads(raw), took, len(raw)


def request_machines(client, count):
    answer, took, _ = client.hf(
        "requestMachines", {"template": {"templateId": TEMPLATE, "machineCount": count}}
    )
    return answer["requestId"], took


def status_body(ids):
    return {"requests": [{"requestId": i} for i in ids]}


def wait_complete(client, ids, deadline_s, since):
    """Polls getRequestStatus (100 ids a call) until every request is complete; returns
    {id: seconds from `since` to the poll that first saw it complete}."""
    done, left = {}, list(ids)
    deadline = time.monotonic() + deadline_s
    while left:
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(left)} of {len(ids)} requests not complete after {deadline_s} s")
        for i in range(0, len(left), 100):
            answer, _, _ = client.hf("getRequestStatus", status_body(left[i : i + 100]))
            for r in answer["requests"]:
                if r["status"] == "complete_with_error":
                    raise SystemExit(f"request {r['requestId']} failed: {r['message']}")
                if r["status"] == "complete":
                    done[r["requestId"]] = time.monotonic() - since
        left = [i for i in left if i not in done]
        if left:
            time.sleep(0.2)
    return done


def many(client, n, count, workers):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [rid for rid, _ in pool.map(lambda _: request_machines(client, count), range(n))]


def setup_load(url, work):
    client = Client(url)
    one = [request_machines(client, 10)[0]]
    hundred = many(client, 100, 10, 20)
    wait_complete(client, one + hundred, 120, time.monotonic())
    answer, _, _ = client.hf("getRequestStatus", status_body(one))
    ids = [m["machineId"] for m in answer["requests"][0]["machines"]]
    assert len(ids) == 10, answer
    for name, body in [
        ("status1.json", status_body(one)),
        ("status100.json", status_body(hundred)),
        (
            "operation.json",
            {
                "operation_type": "GET_INSTANCE_STATUS",
                "parameters": {"instance_ids": ids},
                "strategy_override": "sim-primary",
            },
        ),
    ]:
        with open(f"{work}/{name}", "w") as f:
            json.dump(body, f, separators=(",", ":"))


METRIC = re.compile(r'^(ohfp_reconcile_\w+?)(?:\{strategy="([^"]*)"\})? (\S+)$')


class Sampler(threading.Thread):
    """Every 0.25 s: the service's RSS; every 0.5 s: the reconciler's series from /metrics,
    turned into rounds (time, machines polled and status calls per strategy)."""

    def __init__(self, url, pid):
        super().__init__(daemon=True)
        self.client, self.pid = Client(url), pid
        self.stop = threading.Event()
        self.rss_max_kib = 0
        self.rounds = []  # (round seconds, {strategy: (machines, calls)})
        self.samples = 0

    def proc(self, key):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def metrics(self):
        status, raw, _ = self.client.call("GET", "/metrics")
        if status != 200:
            return None
        m = {"polled": {}, "calls": {}}
        for line in raw.decode().splitlines():
            hit = METRIC.match(line)
            if not hit:
                continue
            name, strategy, value = hit.group(1), hit.group(2), float(hit.group(3))
            if name == "ohfp_reconcile_round_seconds_sum":
                m["sum"] = value
            elif name == "ohfp_reconcile_round_seconds_count":
                m["count"] = value
            elif name == "ohfp_reconcile_last_poll_machines":
                m["polled"][strategy] = int(value)
            elif name == "ohfp_reconcile_last_poll_calls":
                m["calls"][strategy] = int(value)
        return m

    def run(self):
        last, tick = None, 0
        while not self.stop.is_set():
            self.rss_max_kib = max(self.rss_max_kib, self.proc("VmRSS"))
            if tick % 2 == 0:
                m = self.metrics()
                if m and "count" in m:
                    self.samples += 1
                    if last and m["count"] > last["count"]:
                        per_round = (m["sum"] - last["sum"]) / (m["count"] - last["count"])
                        polls = {s: (m["polled"][s], m["calls"].get(s, 0)) for s in m["polled"]}
                        self.rounds.append((per_round, polls))
                    last = m
            tick += 1
            self.stop.wait(0.25)


def line(what, figure, target=None, met=None):
    verdict = "" if met is None else ("met" if met else "NOT MET")
    print(f"| {what} | {figure} | {target or ''} | {verdict} |", flush=True)


def scale(url, pid):
    client = Client(url)
    batch, interval, boot = 1000, 2.0, 3.0  # the bench config's (default) batch and round
    sampler = Sampler(url, pid)
    sampler.start()
    print("| what | figure | target | |")
    print("|---|---|---|---|", flush=True)

    # One request of 10,000 and 1,000 concurrent requests of 10, at once.
    t0 = time.monotonic()
    big = {}

    def one_big():
        big["id"], big["took"] = request_machines(client, 10_000)
        big["at"] = time.monotonic()

    t = threading.Thread(target=one_big)
    t.start()
    small_took = []

    def small(_):
        rid, took = request_machines(client, 10)
        small_took.append(took)
        return rid

    with ThreadPoolExecutor(max_workers=1000) as pool:
        smalls = list(pool.map(small, range(1000)))
    t.join()
    accepted = time.monotonic() - t0
    line("requestMachines of 10,000: time to answer", f"{big['took'] * 1000:.0f} ms")
    small_took.sort()
    line(
        "1,000 concurrent requestMachines of 10: all answered; p50 / max answer",
        f"{accepted:.2f} s; {small_took[500] * 1000:.0f} / {small_took[-1] * 1000:.0f} ms",
    )
    done = wait_complete(client, [big["id"]] + smalls, 300, t0)
    big_done = done[big["id"]] - (big["at"] - t0)
    limit = boot + 2 * interval
    line(
        "the request of 10,000: complete after its answer",
        f"{big_done:.1f} s",
        f"boot {boot:.0f} s + 2 rounds ({2 * interval:.0f} s) = {limit:.0f} s",
        big_done <= limit,
    )
    line(
        "all 1,001 requests (20,000 machines) complete, from the first call",
        f"{max(done.values()):.1f} s",
    )

    # getRequestStatus of 100 requests of 100 machines.
    hundred = many(client, 100, 100, 20)
    wait_complete(client, hundred, 120, time.monotonic())
    times, size = [], 0
    for _ in range(20):
        _, took, size = client.hf("getRequestStatus", status_body(hundred))
        times.append(took)
    times.sort()
    line(
        "getRequestStatus of 100 requests x 100 machines (20 calls): median / max; answer size",
        f"{times[10] * 1000:.0f} / {times[-1] * 1000:.0f} ms; {size / 1e6:.2f} MB",
        "< 50 ms",
        times[10] < 0.050,
    )
    times = []
    for _ in range(10):
        answer, took, size = client.hf("getRequestStatus", status_body([big["id"]]))
        times.append(took)
    times.sort()
    line(
        "getRequestStatus of 1 request x 10,000 machines (10 calls): median / max; answer size",
        f"{times[5] * 1000:.0f} / {times[-1] * 1000:.0f} ms; {size / 1e6:.2f} MB",
        "< 50 ms",
        times[5] < 0.050,
    )

    # requestReturnMachines of the 10,000.
    machines = [
        {"name": m["name"], "machineId": m["machineId"]} for m in answer["requests"][0]["machines"]
    ]
    assert len(machines) == 10_000
    ret, took, _ = client.hf("requestReturnMachines", {"machines": machines})
    line("requestReturnMachines of 10,000: time to answer", f"{took * 1000:.0f} ms", "< 200 ms", took < 0.2)
    # Its rounds go on while the return is under way: wait for it, bounded.
    t1 = time.monotonic()
    deadline = t1 + 120
    while time.monotonic() < deadline:
        a, _, _ = client.hf("getRequestStatus", status_body([ret["requestId"]]))
        if a["requests"][0]["status"] == "complete":
            break
        time.sleep(0.5)
    line("the return of 10,000: complete after its answer", f"{time.monotonic() - t1:.1f} s")
    time.sleep(1)
    sampler.stop.set()
    sampler.join()

    big_rounds = [r for r, polls in sampler.rounds if sum(m for m, _ in polls.values()) >= 10_000]
    all_rounds = [r for r, _ in sampler.rounds]
    if big_rounds:
        line(
            f"reconciler round over >= 10,000 machines ({len(big_rounds)} rounds sampled): mean / max",
            f"{sum(big_rounds) / len(big_rounds) * 1000:.0f} / {max(big_rounds) * 1000:.0f} ms",
            "< 500 ms",
            max(big_rounds) < 0.5,
        )
    if all_rounds:
        line(
            f"reconciler round, all sampled ({len(all_rounds)}): max",
            f"{max(all_rounds) * 1000:.0f} ms",
        )
    wrong = [
        (s, m, c)
        for _, polls in sampler.rounds
        for s, (m, c) in polls.items()
        if m and c != math.ceil(m / batch)
    ]
    most = max(
        ((m, c) for _, polls in sampler.rounds for m, c in polls.values()), default=(0, 0)
    )
    line(
        "status calls per round and strategy = ceil(machines in flight / 1,000)",
        f"{len(sampler.rounds)} rounds sampled, {len(wrong)} off; largest poll {most[0]} machines in {most[1]} calls",
        "always",
        not wrong,
    )
    hwm = sampler.proc("VmHWM")
    line(
        "peak RSS of the service (VmHWM)",
        f"{hwm / 1024:.0f} MiB",
        "< 200 MiB",
        hwm < 200 * 1024,
    )


def main():
    cmd = sys.argv[1]
    if cmd == "setup-load":
        setup_load(sys.argv[2], sys.argv[3])
    elif cmd == "scale":
        scale(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
