"""The HTTP side of calpico.asgi: Django's ASGI handler, with one thread switch per request.

Every view and middleware here is synchronous. Django's ASGI handler builds an
asynchronous middleware chain all the same, so each middleware's `process_request`,
`process_view` and `process_response` crosses from the event loop to the thread for
synchronous code and back: about twenty crossings per request, each waiting for the event
loop to be free. This handler builds the synchronous chain WSGI would use and runs it in
that thread in one go. Async views, should one appear, still work: Django's synchronous
path calls them through async_to_sync.
"""

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class SyncChainASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        chain = self._middleware_chain  # type: ignore[has-type]  # set by load_middleware
        self._middleware_chain = sync_to_async(chain, thread_sensitive=True)


def get_asgi_application() -> SyncChainASGIHandler:
    """django.core.asgi.get_asgi_application, with this handler."""
    import django

    django.setup(set_prefix=False)
    return SyncChainASGIHandler()
