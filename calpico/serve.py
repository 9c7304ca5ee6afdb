"""daphne, as Calpico runs it: `python -m calpico.serve -b 127.0.0.1 -p 8000 calpico.asgi:application`.

It takes daphne's options and arguments and changes these things:

- WebSocket messages and frames are limited to `WS_MAX_MESSAGE_BYTES` (daphne's own default
  is 1 MiB); an option given on the command line still wins.
- A connection the WebSocket layer refuses (a message over that limit, a broken frame) is
  closed with a close frame, 1009 "message too big" for the size, that the page can act on.
  autobahn, under daphne, drops the TCP connection instead (`failByDrop`), which a browser
  reports as 1006 and nobody can tell from a network failure.
- A request body over `REQUEST_MAX_BYTES` (the largest attached file and a little more) is
  answered 413 and never stored. daphne keeps every body whole (in a temporary file) before
  the application sees any of it, so a limit in Django would come after the disk filled.
- The TCP listen queue holds `LISTEN_BACKLOG` connections instead of Twisted's 50: after a
  deploy every open page reconnects within a second, and connections beyond the queue are
  dropped by the kernel and tried again by the browser seconds later.
- Each connection's ASGI input queue is a `calpico.layers.Mailbox` instead of an
  asyncio.Queue: an open socket holds one for its whole life (about 2.3 KB less each).
- A WebSocket lets go of the HTTP request it was upgraded from and of its handshake's text
  once it is open (`CalpicoWebSocketProtocol`), about 4 KB each.
- What is loaded before the server starts is frozen out of the garbage collector's sight.
- Its HTTP requests in progress are counted (`calpico.in_flight`): a draining process
  waits for them before it stops (calpico/shutdown.py).
"""

import asyncio
import gc
import os
import sys
from functools import partial

from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.web.http import HTTPChannel

from calpico import in_flight
from calpico.layers import Mailbox

LISTEN_BACKLOG = 1024


class CalpicoWebSocketProtocol(WebSocketProtocol):
    """daphne's WebSocket protocol, keeping only what an open socket needs.

    daphne hands the TCP connection from Twisted's HTTP channel to this protocol, but the
    channel stays registered as the connection's producer, where all it does once a request
    is being handled is nothing; it kept itself and its request (headers, parsed URI, body
    buffer) in memory for as long as the socket was open. autobahn reads the handshake's
    text and headers only to answer the handshake. (The application's copy of the headers,
    the scope's, is the application's to keep or drop: rooms/consumers.py drops it.)
    """

    def onOpen(self) -> None:
        super().onOpen()
        transport = self.transport
        if isinstance(getattr(transport, "producer", None), HTTPChannel):
            transport.unregisterProducer()
        self.http_headers.clear()  # also daphne's `request.headers`, read only on connect
        self.http_request_data = self.http_response_data = b""


class LimitedRequest(WebRequest):
    """daphne's request, which stops storing a body once it passes `max_body_bytes` (by its
    Content-Length, or as chunks arrive) and answers 413 when the request is complete."""

    max_body_bytes = 0  # set from settings by main()

    def gotLength(self, length) -> None:
        super().gotLength(length)
        self.body_bytes = 0
        self.body_too_large = length is not None and length > self.max_body_bytes

    def handleContentChunk(self, data: bytes) -> None:
        self.body_bytes += len(data)
        if self.body_bytes > self.max_body_bytes:
            self.body_too_large = True
        if not self.body_too_large:
            super().handleContentChunk(data)

    def process(self):
        if getattr(self, "body_too_large", False):
            self.basic_error(413, b"Content Too Large", "The request is larger than this server takes.")
            return None
        return super().process()


class LimitedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = LimitedRequest
        return protocol


class CalpicoServer(Server):
    """daphne's server with the changes above: its WebSocket factory closes connections it
    fails, never drops them; its HTTP requests refuse bodies over REQUEST_MAX_BYTES; a deeper
    listen queue, leaner per-socket state."""

    @property
    def http_factory(self):
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory) -> None:
        # Server.run() makes daphne's factory; this one makes LimitedRequest requests.
        self._http_factory = LimitedHTTPFactory(self) if type(factory) is HTTPFactory else factory

    def __init__(self, application, endpoints=None, *args, **kwargs) -> None:
        endpoints = [
            f"{endpoint}:backlog={LISTEN_BACKLOG}"
            if endpoint.startswith("tcp:") and ":backlog=" not in endpoint
            else endpoint
            for endpoint in endpoints or []
        ]
        super().__init__(application, endpoints, *args, **kwargs)

    def run(self) -> None:
        # Everything loaded so far (Django, the app, the libraries: some 170,000 objects)
        # lives as long as the process: out of the garbage collector's sight, so that each
        # full collection no longer walks it. 2,000 sockets opening set off three, 0.46 s of
        # CPU (0.57 s with the younger generations', about 0.3 ms a socket).
        gc.collect()
        gc.freeze()
        super().run()

    def protocol_connected(self, protocol) -> None:
        # daphne's HTTP request objects are made on the request line, before the body
        # arrives, and say they are done (finished, lost, or upgraded to a WebSocket) with
        # `protocol_disconnected`: what a draining process waits for (calpico/shutdown.py).
        super().protocol_connected(protocol)
        if isinstance(protocol, WebRequest):
            in_flight.began(protocol)

    def protocol_disconnected(self, protocol) -> None:
        super().protocol_disconnected(protocol)
        in_flight.ended(protocol)

    def create_application(self, protocol, scope):
        """daphne's, with a Mailbox for the application's input (daphne only calls its
        `put_nowait`; the application awaits its `get`)."""
        assert "application_instance" not in self.connections[protocol]
        input_queue = Mailbox()
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope, receive=input_queue.get, send=partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance, loop=asyncio.get_event_loop()
        )
        return input_queue

    @property
    def ws_factory(self):
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory) -> None:
        # Server.run() makes the factory and sets its options (sizes, timeouts) at once, before
        # the first connection: this option joins them. Protocols copy options on connect.
        factory.setProtocolOptions(failByDrop=False)
        factory.protocol = CalpicoWebSocketProtocol
        self._ws_factory = factory


class CalpicoCommandLine(CommandLineInterface):
    server_class = CalpicoServer


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "calpico.settings")
    from django.conf import settings

    LimitedRequest.max_body_bytes = settings.REQUEST_MAX_BYTES
    limit = str(settings.WS_MAX_MESSAGE_BYTES)
    defaults = ["--websocket-max-message-size", limit, "--websocket-max-frame-size", limit]
    CalpicoCommandLine().run([*defaults, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
