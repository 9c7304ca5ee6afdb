"""The text of a file sent to the assistant: PDFs through pypdf, text-like files as they are.

Only the file of the message the assistant answers is read (the one that mentions it, or
that it decided to answer), within ASSISTANT_FILE_TOKENS (estimated at four characters a
token). What did not fit is said twice: to the model, which is asked to say so, and under
the reply ("Read the first 12 of 40 pages of report.pdf."). The text goes to the model as
part of the person's message, never rendered anywhere.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
PDF_SCRIPT = Path(__file__).with_name("pdf_text.py")


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


def reads_slowly(message) -> bool:
    """Whether reading the message's file for the assistant may take long (a PDF)."""
    return bool(message.file_name) and readable_kind(message.file_name, message.file_type) == "pdf"


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
    """Through `assistant/pdf_text.py` in a process of its own, within
    ASSISTANT_FILE_SECONDS: a PDF that takes longer is read as far as it got, or not at all."""
    seconds = settings.ASSISTANT_FILE_SECONDS
    try:
        done = subprocess.run(  # noqa: S603  # our own script, no shell
            [sys.executable, str(PDF_SCRIPT), str(limit), str(MAX_PDF_PAGES), str(seconds)],
            input=handle.read(),
            capture_output=True,
            timeout=seconds + 5,  # starting Python and pypdf, then it is killed
            check=True,
        )
        found = json.loads(done.stdout)
    except subprocess.TimeoutExpired:
        log.warning("Reading an attached PDF for the assistant took too long")
        return FileText("", f"Could not read {name}: it took too long.")
    except (subprocess.CalledProcessError, ValueError):
        log.warning("Could not read an attached PDF for the assistant")
        return FileText("", f"Could not read {name}.")
    if found["encrypted"]:
        return FileText("", f"Could not read {name}: it is protected by a password.")
    total = found["total"]
    parts: list[str] = []
    used = 0
    for number, text in enumerate(found["pages"], start=1):
        piece = f"[page {number}]\n{text}\n"
        if used + len(piece) > limit:
            if not parts:  # not even the first page fits: its beginning
                return FileText(piece[:limit], f"Read the beginning of page 1 of {total} of {name}.")
            return FileText("".join(parts), f"Read the first {number - 1} of {total} pages of {name}.")
        parts.append(piece)
        used += len(piece)
    read = len(found["pages"])
    if read < total:
        return FileText("".join(parts), f"Read the first {read} of {total} pages of {name}.")
    if not any(found["pages"]):
        return FileText("", f"Found no text in {name} (a scan?).")
    return FileText("".join(parts))
