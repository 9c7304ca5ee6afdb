"""Searching the messages of my rooms (rooms/services/search.py does the finding)."""

from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.views.decorators.http import require_GET

from rooms.access import parse_id
from rooms.queries import room_titles, sidebar_entries
from rooms.services.search import MAX_QUERY_LENGTH, search_messages


@require_GET
def search(request):
    """The results page (`?q=`), and for htmx the next page of results (`&before=`)."""
    text = request.GET.get("q", "")
    before = parse_id(request.GET.get("before"))
    results, error = None, ""
    try:
        results = search_messages(request.user, text, before=before)
    except ValidationError as exc:
        error = exc.messages[0]
    found = results.hits if results else []
    context = {"q": text[: MAX_QUERY_LENGTH * 2], "results": results, "error": error}
    # Each result's room as the sidebar names it (a direct room by the other person): from
    # the sidebar on the page, with a query of its own for the next page of results.
    if request.htmx and before:
        titles = room_titles({hit.message.room for hit in found}, request.user)
        context["hits"] = [(hit, titles[hit.message.room_id]) for hit in found]
        return render(request, "rooms/search.html#hits", context)
    sidebar = sidebar_entries(request.user)
    titles = {entry.room.pk: entry.title for entry in sidebar}
    context["hits"] = [(hit, titles.get(hit.message.room_id, hit.message.room.title)) for hit in found]
    context["sidebar"] = sidebar
    return render(request, "rooms/search.html", context, status=422 if error else 200)
