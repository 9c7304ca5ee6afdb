"""Web search for the assistant: a SearxNG instance's JSON API, offered to the model as the
OpenAI tool `web_search`.

Only when SEARCH_URL is set (e.g. http://127.0.0.1:8888/search; the instance must have the
json format enabled). The model calls the tool; the runner shows "Searching the web for …"
in the reply's place, asks SearxNG (`search`, in a thread, ASSISTANT_SEARCH_TIMEOUT_SECONDS),
hands the numbered results back as the tool's output (untrusted text, for the model only,
never rendered), and the reply then streams; its sources are added under it as numbered
links (`sources_markdown`), their titles escaped as plain text.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from django.conf import settings

log = logging.getLogger(__name__)

WEB_SEARCH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "web_search",
        "description": (
            "Search the web. Use it for recent events or facts you are not sure of. The results are "
            "numbered: cite the ones you use as [1], [2]."
        ),
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to search for"}},
            "required": ["query"],
            "additionalProperties": False,
        },
    },
}
# Searches one reply may make (one round of tool calls).
MAX_SEARCHES = 2


@dataclass(frozen=True)
class Source:
    title: str
    url: str


def enabled() -> bool:
    return bool(settings.SEARCH_URL)


def search(query: str, first_number: int = 1) -> tuple[str, list[Source]]:
    """(the tool's output for the model, the sources it lists). Never raises: a failure is
    said in the output, and the model answers without results."""
    query = " ".join(query.split())[:300]
    if not query:
        return json.dumps({"error": "empty query"}), []
    url = f"{settings.SEARCH_URL}?{urlencode({'q': query, 'format': 'json'})}"
    try:
        with urllib.request.urlopen(url, timeout=settings.ASSISTANT_SEARCH_TIMEOUT_SECONDS) as response:  # noqa: S310
            data = json.loads(response.read(2_000_000))
    except (OSError, ValueError, urllib.error.URLError):
        log.warning("Web search failed", exc_info=True)
        return json.dumps({"error": "the search service did not answer; answer without it and say so"}), []
    results = []
    sources: list[Source] = []
    for item in data.get("results", []) if isinstance(data, dict) else []:
        if not isinstance(item, dict):
            continue
        link = str(item.get("url") or "")
        if urlsplit(link).scheme not in ("http", "https"):
            continue
        title = " ".join(str(item.get("title") or link).split())[:200]
        number = first_number + len(sources)
        sources.append(Source(title, link))
        snippet = " ".join(str(item.get("content") or "").split())[:600]
        results.append({"number": number, "title": title, "url": link, "snippet": snippet})
        if len(sources) >= settings.ASSISTANT_SEARCH_RESULTS:
            break
    return json.dumps({"query": query, "results": results}, ensure_ascii=False), sources


_MARKDOWN_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_{}[]()<>#+-.!|~&"})


def sources_markdown(sources: list[Source]) -> str:
    """The sources as a numbered list of links, to go under the reply's text."""
    if not sources:
        return ""
    lines = ["", "", "**Sources**", ""]
    for number, source in enumerate(sources, start=1):
        title = source.title.translate(_MARKDOWN_SPECIAL)
        link = quote(source.url, safe=":/?&=#%+@,;~!$'*-._")
        lines.append(f"{number}. [{title}]({link})")
    return "\n".join(lines)
