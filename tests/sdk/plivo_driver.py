"""Drives a Chorus engine through the official plivo-python SDK (API.md §13.1).

Usage: plivo_driver.py BASE_URL AUTH_ID AUTH_TOKEN [OPERATIONS_JSON]
BASE_URL is the engine's HTTP root (http://127.0.0.1:PORT); the SDK talks to BASE_URL/v1.
An operation is {"op": "<conferences method>", "args": [...], "kwargs": {...}}, e.g.
{"op": "member_mute", "args": ["room", "12"]}. See sdk_common.py for the output.
"""

import plivo
import plivo.rest.client as plivo_client

from sdk_common import run

# The SDK calls conferences.* only through these methods; anything else is a test bug.
OPERATIONS = {
    "list", "get", "delete", "delete_all", "hangup", "hangup_all",
    "member_hangup", "member_kick", "member_mute", "member_mute_stop",
    "member_deaf", "member_deaf_stop", "member_play", "member_play_stop",
    "member_speak", "member_speak_stop", "record", "record_stop",
}

_clients = {}


def client_for(context):
    key = (context["base"], context["auth_id"], context["token"])
    if key not in _clients:
        # request() resets client.base_uri from these module constants on every call, so they
        # are what must point at the engine (API.md §13.1).
        base = context["base"] + "/v1/Account"
        for name in ("PLIVO_API_BASE_URI", "API_VOICE_BASE_URI",
                     "API_VOICE_BASE_URI_FALLBACK_1", "API_VOICE_BASE_URI_FALLBACK_2"):
            setattr(plivo_client, name, base)
        _clients[key] = plivo.RestClient(context["auth_id"], context["token"])
    return _clients[key]


def perform(context, op):
    name = op["op"]
    if name not in OPERATIONS:
        raise ValueError("unknown plivo operation %r" % name)
    method = getattr(client_for(context).conferences, name)
    return method(*op.get("args", []), **op.get("kwargs", {}))


if __name__ == "__main__":
    run(perform)
