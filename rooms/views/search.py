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
    hits = []
    if results:
        titles = room_titles({hit.message.room for hit in results.hits}, request.user)
        hits = [(hit, titles[hit.message.room_id]) for hit in results.hits]
    context = {"q": text[: MAX_QUERY_LENGTH * 2], "results": results, "hits": hits, "error": error}
    if request.htmx and before:
        return render(request, "rooms/search.html#hits", context)
    context["sidebar"] = sidebar_entries(request.user)
    return render(request, "rooms/search.html", context, status=422 if error else 200)
