#!/usr/bin/env python3
"""An example provider for ohfp's `http` strategies: every call of the provider protocol
(openapi/provider-protocol.json) over in-memory instances that boot after a delay. Python 3
standard library only. The starting point for a real integration: keep the HTTP handling and
replace the Pool's methods with calls to your cloud or pool.

    python3 examples/provider.py --port 9000 [--api-key KEY] [--boot-seconds 2]

Prints the port it listens on (useful with --port 0) and serves until interrupted.
"""
import argparse
import json
import math
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OPERATIONS = ["CREATE_INSTANCES", "GET_INSTANCE_STATUS", "TERMINATE_INSTANCES",
              "VALIDATE_TEMPLATE", "GET_AVAILABLE_TEMPLATES", "HEALTH_CHECK"]
STATUS = {"throttling": 429, "capacity": 409, "auth": 401, "validation": 400,
          "transient": 503, "not_found": 404}


class Fail(Exception):
    """An error answer: a class from STATUS, a stable code, a message."""

    def __init__(self, cls, code, message, retry_after=None):
        super().__init__(message)
        self.cls, self.code, self.retry_after = cls, code, retry_after


class Pool:
    def __init__(self, args):
        self.args, self.lock = args, threading.Lock()
        self.instances, self.answers = {}, {}  # id -> instance; idempotency key -> answer

    def machine(self, i, now):
        if i["ended"] is not None:
            state = "terminated" if now >= i["ended"] + self.args.shutdown_seconds else "shutting-down"
        else:
            state = "running" if now >= i["launched"] + self.args.boot_seconds else "pending"
        up = state != "pending"
        return {"instance_id": i["id"], "state": state, "instance_type": i["type"],
                "private_ip": i["ip"] if up else None, "public_ip": None,
                "private_dns": "%s.example.internal" % i["id"] if up else None,
                "launch_time": int(i["launched"]), "region": i["region"],
                "price_type": i["price_type"], "request_id": i["request_id"],
                "reclaim_notice": "reclaimed by the example pool" if i["reclaimed"] else None}

    def live(self):
        return sum(1 for i in self.instances.values() if i["ended"] is None)

    def create(self, body, key, region):
        spec, units = body.get("spec"), body.get("units")
        if not isinstance(spec, dict) or not isinstance(units, int) or units < 1:
            raise Fail("validation", "INVALID_REQUEST", "spec (an object) and units (1 or more) are required")
        if not key:
            raise Fail("validation", "IDEMPOTENCY_KEY_REQUIRED", "the Idempotency-Key header is required")
        with self.lock:
            if key in self.answers and not self.args.forget_keys:
                return self.answers[key]
            types = spec.get("instance_types") or [{"instance_type": "ex.small", "weight": 1}]
            weight = max(types[0].get("weight", 1), 1) if spec.get("weighted") else 1
            count = math.ceil(units / weight)
            if self.args.capacity is not None and self.live() + count > self.args.capacity:
                raise Fail("capacity", "INSUFFICIENT_CAPACITY", "room for %d more, %d asked"
                           % (self.args.capacity - self.live(), count))
            now, made = time.time(), []
            for _ in range(count):
                n = len(self.instances) + 1
                i = {"id": "ex-" + uuid.uuid4().hex[:12], "type": types[0]["instance_type"],
                     "ip": "10.9.%d.%d" % (n // 250, n % 250 + 4), "launched": now, "ended": None,
                     "region": region, "request_id": body.get("request_id"), "reclaimed": False,
                     "price_type": "ondemand" if spec.get("price_type", "ondemand") == "ondemand" else "spot"}
                self.instances[i["id"]] = i
                made.append(self.machine(i, now))
            answer = {"instance_ids": [m["instance_id"] for m in made], "instances": made, "count": len(made)}
            self.answers[key] = answer
            return answer

    def status(self, body):
        ids, requests, now = body.get("instance_ids", []), body.get("request_ids", []), time.time()
        with self.lock:
            found = [self.instances[i] for i in ids if i in self.instances]
            found += [i for i in self.instances.values() if i["request_id"] in requests and i not in found]
            return {"machines": [self.machine(i, now) for i in found],
                    "not_found": [i for i in ids if i not in self.instances]}

    def terminate(self, body):
        answer = {"terminating": [], "already_terminating": [], "not_found": []}
        with self.lock:
            for ref in body.get("machines", []):
                i = self.instances.get(ref.get("instance_id"))
                if i is None:
                    answer["not_found"].append(ref.get("instance_id"))
                elif i["ended"] is not None:
                    answer["already_terminating"].append(i["id"])
                else:
                    i["ended"], i["reclaimed"] = time.time(), bool(body.get("simulate_reclaim"))
                    answer["terminating"].append(i["id"])
        return answer

    def validate(self, spec):
        errors = []
        if not spec.get("template_id"):
            errors.append({"field": "template_id", "message": "is required"})
        if not spec.get("instance_types"):
            errors.append({"field": "instance_types", "message": "an instance type is required"})
        return {"valid": not errors, "errors": errors}

    def health(self, region):
        return {"is_healthy": True, "status_message": "example pool answers", "region": region,
                "live_instances": self.live(), "capacity": self.args.capacity}

    def capabilities(self, region):
        return {"supported_operations": OPERATIONS, "features": {"instances": True, "example": True},
                "limitations": {"max_instances_per_request": 1000},
                "templates": [{"template_id": "example-small", "instance_type": "ex.small", "region": region}]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections open between calls

    def answer(self, status, body, retry_after=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.end_headers()
        self.wfile.write(data)

    def serve(self):
        pool, args = self.server.pool, self.server.pool.args
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        time.sleep(args.slow)
        if args.broken:
            return self.answer(500, "internal server error")
        try:
            with pool.lock:
                args.fail_first -= 1
                throttled = args.fail_first >= 0
            if throttled:
                raise Fail("throttling", "SLOW_DOWN", "too many calls", retry_after=0.1)
            if args.api_key and self.headers.get("Authorization") != "Bearer " + args.api_key:
                raise Fail("auth", "UNAUTHORIZED", "a valid bearer token is required")
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                raise Fail("validation", "INVALID_JSON", "the body is not JSON")
            if not isinstance(body, dict):
                raise Fail("validation", "INVALID_JSON", "the body must be a JSON object")
            region = self.headers.get("X-Ohfp-Region") or "example-1"
            route = (self.command, self.path.rstrip("/"))
            if route == ("POST", "/instances"):
                return self.answer(200, pool.create(body, self.headers.get("Idempotency-Key"), region))
            calls = {("POST", "/instances/status"): lambda: pool.status(body),
                     ("POST", "/instances/terminate"): lambda: pool.terminate(body),
                     ("POST", "/validate"): lambda: pool.validate(body),
                     ("GET", "/health"): lambda: pool.health(region),
                     ("GET", "/capabilities"): lambda: pool.capabilities(region)}
            if route not in calls:
                raise Fail("not_found", "NO_SUCH_CALL", "%s %s is not a call of the protocol" % route)
            self.answer(200, calls[route]())
        except Fail as f:
            self.answer(STATUS[f.cls], {"class": f.cls, "code": f.code, "message": str(f)}, f.retry_after)

    do_GET = do_POST = serve


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True, help="0 picks a free port")
    p.add_argument("--api-key", help="answer 401 to calls without this bearer token")
    p.add_argument("--boot-seconds", type=float, default=2.0)
    p.add_argument("--shutdown-seconds", type=float, default=1.0)
    p.add_argument("--capacity", type=int, help="most live instances at once")
    # Misbehaviours for ohfp's tests of retries, timeouts and the conformance kit.
    p.add_argument("--fail-first", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--slow", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--broken", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--forget-keys", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.pool = Pool(args)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
