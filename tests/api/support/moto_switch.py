"""moto's server behind a small WSGI layer for the ohfp tests (run with the moto venv's python).

  POST /_ohfp/fault   body: "throttle" (503 RequestLimitExceeded / Throttling), "error"
                      (500 InternalError) or "off"
  POST /_ohfp/capacity body: instance types, comma-separated ("" for none): RunInstances of
                      one of them answers 500 InsufficientInstanceCapacity, as EC2 does
  GET  /_ohfp/calls   JSON {action: count} of the AWS calls seen since the last reset
  GET  /_ohfp/requests JSON [{action, params}] of the query-protocol calls since the last reset
                      (the newest 200), for what moto does not reflect
  POST /_ohfp/calls   resets the counts and the recorded requests
  POST /_ohfp/answer  body: JSON {"action": A, "body": B}: calls of action A (a JSON-protocol
                      call, e.g. ListServiceQuotas, which moto serves for vpc only) answer B,
                      a recorded AWS answer, instead of moto
Everything else goes to moto (its /moto-api/ included).
"""
import argparse
import io
import json
import threading
from collections import Counter
from urllib.parse import parse_qs

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

state = {"fault": "off", "calls": Counter(), "short": set(), "requests": [], "answers": {}}
KEPT_REQUESTS = 200
guard = threading.Lock()


def call_of(environ):
    """The AWS action of a query-protocol call (EC2, Auto Scaling) or a JSON one (SSM), and
    the query-protocol parameters ({} for JSON calls)."""
    size = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(size) if size else b""
    environ["wsgi.input"] = io.BytesIO(body)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1], {}
    form = parse_qs(body.decode(errors="replace"))
    query = parse_qs(environ.get("QUERY_STRING", ""))
    return (form.get("Action") or query.get("Action") or ["?"])[0], form


def no_capacity(instance_type, start_response):
    """EC2's answer when a zone has no room for the type (a server error, HTTP 500)."""
    body = ("<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>"
            f"We currently do not have sufficient {instance_type} capacity in the Availability "
            "Zone you requested.</Message></Error></Errors><RequestID>ohfp-test</RequestID></Response>")
    out = body.encode()
    start_response("500 Internal Server Error",
                   [("Content-Type", "text/xml"), ("Content-Length", str(len(out)))])
    return [out]


def fault_answer(fault, environ, start_response):
    ec2 = "/ec2/" in environ.get("HTTP_AUTHORIZATION", "")
    if fault == "throttle":
        status, code = "503 Service Unavailable", "RequestLimitExceeded" if ec2 else "Throttling"
    else:
        status, code = "500 Internal Server Error", "InternalError" if ec2 else "InternalFailure"
    if ec2:
        body = f"<Response><Errors><Error><Code>{code}</Code><Message>injected by the test</Message></Error></Errors><RequestID>ohfp-test</RequestID></Response>"
    else:
        body = f"<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code><Message>injected by the test</Message></Error><RequestId>ohfp-test</RequestId></ErrorResponse>"
    out = body.encode()
    start_response(status, [("Content-Type", "text/xml"), ("Content-Length", str(len(out)))])
    return [out]


def wrap(moto_app):
    def app(environ, start_response):
        path = environ["PATH_INFO"]
        method = environ["REQUEST_METHOD"]
        if path == "/_ohfp/fault" and method == "POST":
            size = int(environ.get("CONTENT_LENGTH") or 0)
            wanted = environ["wsgi.input"].read(size).decode().strip()
            if wanted not in ("throttle", "error", "off"):
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [b"expected throttle, error or off\n"]
            with guard:
                state["fault"] = wanted
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [wanted.encode()]
        if path == "/_ohfp/capacity" and method == "POST":
            size = int(environ.get("CONTENT_LENGTH") or 0)
            short = {t.strip() for t in environ["wsgi.input"].read(size).decode().split(",")}
            with guard:
                state["short"] = {t for t in short if t}
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [",".join(sorted(state["short"])).encode()]
        if path == "/_ohfp/answer" and method == "POST":
            size = int(environ.get("CONTENT_LENGTH") or 0)
            wanted = json.loads(environ["wsgi.input"].read(size))
            with guard:
                state["answers"][wanted["action"]] = json.dumps(wanted["body"]).encode()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [wanted["action"].encode()]
        if path == "/_ohfp/calls":
            with guard:
                if method == "POST":
                    state["calls"].clear()
                    state["requests"].clear()
                out = json.dumps(dict(state["calls"])).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [out]
        if path == "/_ohfp/requests":
            with guard:
                out = json.dumps(state["requests"]).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [out]
        if path.startswith("/moto-api"):
            return moto_app(environ, start_response)
        action, params = call_of(environ)
        with guard:
            state["calls"][action] += 1
            if params:
                state["requests"].append(
                    {"action": action, "params": {k: v[0] for k, v in params.items()}})
                del state["requests"][:-KEPT_REQUESTS]
            fault = state["fault"]
            short = state["short"]
            recorded = state["answers"].get(action)
        if fault != "off":
            return fault_answer(fault, environ, start_response)
        if recorded is not None:
            start_response("200 OK", [("Content-Type", "application/x-amz-json-1.1"),
                                      ("Content-Length", str(len(recorded)))])
            return [recorded]
        instance_type = (params.get("InstanceType") or [None])[0]
        if action == "RunInstances" and instance_type in short:
            return no_capacity(instance_type, start_response)
        return moto_app(environ, start_response)

    return app


if __name__ == "__main__":
    args = argparse.ArgumentParser()
    args.add_argument("--port", type=int, required=True)
    port = args.parse_args().port
    run_simple("127.0.0.1", port, wrap(DomainDispatcherApplication(create_backend_app)),
               threaded=True, request_handler=MotoRequestHandler)
