"""The one WebSocket of the app: the page's socket, at /ws/ (calpico/asgi.py)."""

from rooms.consumers import RoomConsumer

WEBSOCKET_PATH = "/ws/"
room_socket = RoomConsumer.as_asgi()
