"""Shared plumbing of the SDK drivers: operations in, one JSON line per result out.

Operations come as a JSON list on the command line (after the base URL, auth id and token),
or, without it, one JSON value per line on stdin (an operation or a list of them); each
result is printed and flushed at once, so a test can interleave SDK calls with audio checks
through one long-lived driver process.

Each result line is {"ok": true, "status": <HTTP status>, "result": <the SDK's return value as
JSON>} or {"ok": false, "status": ..., "exception": "<class name>", "message": "<str(exc)>"}.
The HTTP status is observed by wrapping requests.Session.send; the SDK itself is untouched.
"""

import json
import sys
import traceback

import requests

_last = {"status": None, "method": None, "url": None}
_original_send = requests.Session.send


def _recording_send(self, request, **kwargs):
    _last["status"] = None
    _last["method"] = request.method
    _last["url"] = request.url
    response = _original_send(self, request, **kwargs)
    _last["status"] = response.status_code
    return response


requests.Session.send = _recording_send


def jsonable(value):
    """The SDK's return value as plain JSON: response objects become their public fields."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if hasattr(value, "__dict__"):
        return {
            k: jsonable(v)
            for k, v in vars(value).items()
            if not k.startswith("_") and k != "client"
        }
    return repr(value)


def run(perform):
    """Reads operations, calls perform(op) for each, prints the results."""
    if len(sys.argv) < 4:
        sys.exit("usage: %s BASE_URL AUTH_ID AUTH_TOKEN [OPERATIONS_JSON]" % sys.argv[0])
    base, auth_id, token = sys.argv[1:4]
    # Results alone go to stdout: anything the SDK prints (plivo prints its 5xx fallbacks)
    # goes to stderr, so it cannot break the one-line-per-operation protocol.
    out = sys.stdout
    sys.stdout = sys.stderr
    context = {"base": base.rstrip("/"), "auth_id": auth_id, "token": token}

    def one(op):
        _last["status"] = None
        _last["method"] = None
        _last["url"] = None
        try:
            result = perform(context, op)
            line = {"ok": True, "result": jsonable(result)}
        except Exception as exc:  # the class name is what the tests look at
            line = {
                "ok": False,
                "exception": type(exc).__name__,
                "message": str(exc),
            }
            if type(exc).__module__.split(".")[0] not in ("plivo", "vobiz"):
                line["traceback"] = traceback.format_exc()[-1500:]
        line["status"] = _last["status"]
        line["request"] = "%s %s" % (_last["method"], _last["url"])
        out.write(json.dumps(line) + "\n")
        out.flush()

    def many(value):
        for op in value if isinstance(value, list) else [value]:
            one(op)

    if len(sys.argv) > 4:
        many(json.loads(sys.argv[4]))
        return
    for raw in sys.stdin:
        raw = raw.strip()
        if raw:
            many(json.loads(raw))
