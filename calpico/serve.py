"""daphne, as Calpico runs it: `python -m calpico.serve -b 127.0.0.1 -p 8000 calpico.asgi:application`.

It takes daphne's options and arguments and changes three things:

- WebSocket messages and frames are limited to `WS_MAX_MESSAGE_BYTES` (daphne's own default
  is 1 MiB); an option given on the command line still wins.
- A connection the WebSocket layer refuses (a message over that limit, a broken frame) is
  closed with a close frame, 1009 "message too big" for the size, that the page can act on.
  autobahn, under daphne, drops the TCP connection instead (`failByDrop`), which a browser
  reports as 1006 and nobody can tell from a network failure.
- A request body over `REQUEST_MAX_BYTES` (the largest attached file and a little more) is
  answered 413 and never stored. daphne keeps every body whole (in a temporary file) before
  the application sees any of it, so a limit in Django would come after the disk filled.
"""

import os
import sys

from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server


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
    """daphne's server; its WebSocket factory closes connections it fails, never drops them,
    and its HTTP requests refuse bodies over REQUEST_MAX_BYTES."""

    @property
    def http_factory(self):
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory) -> None:
        # Server.run() makes daphne's factory; this one makes LimitedRequest requests.
        self._http_factory = LimitedHTTPFactory(self) if type(factory) is HTTPFactory else factory

    @property
    def ws_factory(self):
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory) -> None:
        # Server.run() makes the factory and sets its options (sizes, timeouts) at once, before
        # the first connection: this option joins them. Protocols copy options on connect.
        factory.setProtocolOptions(failByDrop=False)
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
