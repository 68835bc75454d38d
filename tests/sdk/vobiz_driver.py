"""Drives a Chorus engine through the official vobiz-python SDK (API.md §13.2).

Usage: vobiz_driver.py BASE_URL AUTH_ID AUTH_TOKEN [OPERATIONS_JSON]
BASE_URL is the engine's HTTP root (http://127.0.0.1:PORT); the SDK talks to BASE_URL/api/v1.
vobiz-python has no conference resource, so an operation is a call of its generic request():
{"method": "POST", "path": ["Conference", "room", "Member", "12", "Mute"], "data": {...}}.
See sdk_common.py for the output.
"""

import vobiz

from sdk_common import run

_clients = {}


def client_for(context):
    key = (context["base"], context["auth_id"], context["token"])
    if key not in _clients:
        client = vobiz.RestClient(context["auth_id"], context["token"])
        # A plain attribute that request() keeps (API.md §13.2).
        client.base_uri = context["base"] + "/api/v1/Account"
        _clients[key] = client
    return _clients[key]


def perform(context, op):
    client = client_for(context)
    data = op.get("data")
    if data is None:
        return client.request(op["method"], tuple(op["path"]))
    return client.request(op["method"], tuple(op["path"]), data)


if __name__ == "__main__":
    run(perform)
