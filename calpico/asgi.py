"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "calpico.settings")

from calpico.handlers import get_asgi_application

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.security.websocket import AllowedHostsOriginValidator, WebsocketDenier  # noqa: E402

from assistant import runner  # noqa: E402
from calpico import shutdown  # noqa: E402
from jobs import runner as jobs_runner  # noqa: E402
from rooms.routing import WEBSOCKET_PATH, room_socket  # noqa: E402

# The page's socket, behind the Origin check. No routers and no session or auth middleware:
# each would keep a coroutine frame (and a copy of the scope) for as long as the socket is
# open, and the consumer reads the session cookie itself, with the rest of what it needs on
# opening, in one trip to the database (rooms/opening.py).
websocket_app = AllowedHostsOriginValidator(room_socket)


async def application(scope, receive, send):
    kind = scope["type"]
    if kind not in ("http", "websocket"):
        raise ValueError(f"No application configured for scope type {kind!r}")
    # The server has no start-up hook (daphne does not speak ASGI lifespan), so the
    # assistant's runner and the jobs' start in the event loop with the first connection.
    runner.ensure_started()
    jobs_runner.ensure_started(runner.WORKER_NAME)
    if kind == "http":
        return await django_asgi_app(scope, receive, send)
    if scope["path"] != scope.get("root_path", "") + WEBSOCKET_PATH:
        return await WebsocketDenier()(scope, receive, send)
    return await websocket_app(scope, receive, send)


# On SIGTERM: sockets closed with 1012, the assistant's runs and the jobs handed back at once.
shutdown.install_reactor_hook()
