"""The text of a file sent to the assistant: PDFs through pypdf, text-like files as they are.

Only the file of the message the assistant answers is read (the one that mentions it, or
that it decided to answer), within ASSISTANT_FILE_TOKENS (estimated at four characters a
token). What did not fit is said twice: to the model, which is asked to say so, and under
the reply ("Read the first 12 of 40 pages of report.pdf."). The text goes to the model as
part of the person's message, never rendered anywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings

from rooms import filetypes

log = logging.getLogger(__name__)

TEXT_EXTENSIONS = frozenset(
    [
        "txt",
        "md",
        "markdown",
        "rst",
        "csv",
        "tsv",
        "log",
        "json",
        "jsonl",
        "xml",
        "yaml",
        "yml",
        "toml",
        "ini",
        "cfg",
        "conf",
        "html",
        "htm",
        "css",
        "js",
        "mjs",
        "ts",
        "tsx",
        "jsx",
        "py",
        "rb",
        "go",
        "rs",
        "java",
        "kt",
        "kts",
        "scala",
        "swift",
        "c",
        "h",
        "cc",
        "cpp",
        "hpp",
        "cs",
        "php",
        "pl",
        "lua",
        "r",
        "sql",
        "sh",
        "bash",
        "zsh",
        "tex",
        "srt",
        "vtt",
        "diff",
        "patch",
    ]
)
# A PDF's pages read at most, whatever fits: extraction costs CPU per page.
MAX_PDF_PAGES = 300


@dataclass(frozen=True)
class FileText:
    text: str
    # What was left out, for the room and the model ("" if the whole file was read).
    note: str = ""


def readable_kind(name: str, file_type: str) -> str:
    """ "pdf", "text", or "" for a file the assistant cannot read."""
    ext = filetypes.extension(name)
    if ext == "pdf" or file_type == "application/pdf":
        return "pdf"
    if ext in TEXT_EXTENSIONS or file_type.startswith("text/"):
        return "text"
    return ""


def read_for_assistant(field, name: str, file_type: str, max_chars: int | None = None) -> FileText | None:
    """The text of the stored file `field` (a FieldFile) within `max_chars`, or None if it is
    not a kind the assistant reads."""
    kind = readable_kind(name, file_type)
    if not kind:
        return None
    limit = max_chars if max_chars is not None else settings.ASSISTANT_FILE_TOKENS * 4
    try:
        with field.open("rb") as handle:
            if kind == "pdf":
                return _read_pdf(handle, name, limit)
            return _read_text(handle, name, limit)
    except Exception:
        log.warning("Could not read an attached %s file for the assistant", kind, exc_info=True)
        return FileText("", f"Could not read {name}.")


def _read_text(handle, name: str, limit: int) -> FileText:
    data = handle.read(limit * 4 + 4)  # UTF-8: at most four bytes a character
    total = handle.seek(0, 2)
    text = data.decode("utf-8", errors="replace")
    if len(text) <= limit and total <= len(data):
        return FileText(text)
    share = max(1, min(99, round(100 * limit / max(total, 1))))
    return FileText(text[:limit], f"Read about the first {share}% of {name}.")


def _read_pdf(handle, name: str, limit: int) -> FileText:
    import pypdf

    reader = pypdf.PdfReader(handle)
    if reader.is_encrypted:
        return FileText("", f"Could not read {name}: it is protected by a password.")
    total = len(reader.pages)
    parts: list[str] = []
    used = 0
    found_text = False
    for number, page in enumerate(reader.pages[:MAX_PDF_PAGES], start=1):
        text = (page.extract_text() or "").strip()
        found_text = found_text or bool(text)
        piece = f"[page {number}]\n{text}\n"
        if used + len(piece) > limit:
            if not parts:  # not even the first page fits: its beginning
                return FileText(piece[:limit], f"Read the beginning of page 1 of {total} of {name}.")
            return FileText("".join(parts), f"Read the first {number - 1} of {total} pages of {name}.")
        parts.append(piece)
        used += len(piece)
    if total > MAX_PDF_PAGES:
        return FileText("".join(parts), f"Read the first {MAX_PDF_PAGES} of {total} pages of {name}.")
    if not found_text:
        return FileText("", f"Found no text in {name} (a scan?).")
    return FileText("".join(parts))
