"""The callback receiver: delivery reports and replies pushed by the gateway, into the ledger."""

from worker.receiver.app import DEFAULT_MAX_BODY_BYTES, check_token, make_receiver_app
from worker.runners.asgi import AsgiServer, ServerError, serve_forever

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "AsgiServer",
    "ServerError",
    "check_token",
    "make_receiver_app",
    "serve_forever",
]
