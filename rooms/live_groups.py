"""The channel-layer group names: one per room, one per person (all of their sockets)."""


def room_group(room_id: int) -> str:
    return f"room.{room_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"
