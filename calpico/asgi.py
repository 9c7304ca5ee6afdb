"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "calpico.settings")

from calpico.handlers import get_asgi_application

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from assistant import runner  # noqa: E402
from calpico import shutdown  # noqa: E402
from jobs import runner as jobs_runner  # noqa: E402
from rooms.routing import websocket_urlpatterns  # noqa: E402

router = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)


async def application(scope, receive, send):
    # The server has no start-up hook (daphne does not speak ASGI lifespan), so the
    # assistant's runner starts in the event loop with the first connection.
    if scope["type"] in ("http", "websocket"):
        runner.ensure_started()
        jobs_runner.ensure_started(runner.WORKER_NAME)
    return await router(scope, receive, send)


# On SIGTERM: sockets closed with 1012, the assistant's runs and the jobs handed back at once.
shutdown.install_reactor_hook()
