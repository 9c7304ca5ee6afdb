"""What an attached file is called, what type it is, how it is drawn and how it is served.

The type comes from the name's extension, read against Python's own table (not the
system's /etc/mime.types, so every server says the same). Nothing here is trusted: the
name and the type are only labels. Whatever the type, a file is served as a download
(`Content-Disposition: attachment`, `nosniff`) and, unless its type is in SERVED_AS_ITSELF,
as application/octet-stream: never as HTML, SVG, XML or script a browser would run.
"""

from __future__ import annotations

import mimetypes
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

from calpico.text import is_invisible

_TYPES = mimetypes.MimeTypes()
for _type, _extension in [
    ("application/x-7z-compressed", ".7z"),
    ("application/vnd.rar", ".rar"),
    ("application/x-xz", ".xz"),
    ("application/zstd", ".zst"),
    ("application/x-msdownload", ".exe"),
    ("application/x-msi", ".msi"),
    ("application/x-apple-diskimage", ".dmg"),
    ("application/vnd.debian.binary-package", ".deb"),
    ("application/x-rpm", ".rpm"),
    ("application/vnd.android.package-archive", ".apk"),
    ("application/java-archive", ".jar"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".xlsx"),
    ("application/vnd.openxmlformats-officedocument.presentationml.presentation", ".pptx"),
    ("application/vnd.oasis.opendocument.text", ".odt"),
    ("application/vnd.oasis.opendocument.spreadsheet", ".ods"),
    ("application/vnd.oasis.opendocument.presentation", ".odp"),
    ("audio/mp4", ".m4a"),
    ("audio/flac", ".flac"),
    ("image/heic", ".heic"),
    ("image/avif", ".avif"),
    ("text/markdown", ".md"),
]:
    _TYPES.add_type(_type, _extension)

UNKNOWN_TYPE = "application/octet-stream"

# Types a browser shows as inert content at most (a picture, a sound, a PDF in its viewer),
# never as a page of this site: served with their own Content-Type, still as a download.
# Anything else (text/html, image/svg+xml, XML, JavaScript, unknown) goes as octet-stream.
SERVED_AS_ITSELF = frozenset(
    {
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-tar",
        "application/x-7z-compressed",
        "application/vnd.rar",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/heic",
        "audio/mpeg",
        "audio/mp4",
        "audio/ogg",
        "audio/wav",
        "audio/x-wav",
        "audio/flac",
        "video/mp4",
        "video/webm",
        "video/quicktime",
    }
)

NAME_MAX_LENGTH = 200
# Characters no file name on Windows, macOS or Linux may hold, and quotes that would
# break out of a header's quoted string.
_RESERVED = set('<>:"/\\|?*')


def clean_file_name(name: str) -> str:
    """The name people see and the download is saved as: the last part of the path the
    browser sent, NFC, without control, invisible or direction-reversing characters,
    without characters file systems refuse, at most NAME_MAX_LENGTH characters (the
    extension kept), and never empty or a dot name."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = []
    for char in name:
        if char in _RESERVED:
            kept.append("_")
        elif char == " " or not is_invisible(char):
            kept.append(char)
        elif char.isspace():
            kept.append(" ")
    name = " ".join("".join(kept).split()).strip(". ")
    if not name:
        return "file"
    if len(name) > NAME_MAX_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16 and stem:
            name = stem[: NAME_MAX_LENGTH - len(extension) - 1].rstrip(". ") + "." + extension
        else:
            name = name[:NAME_MAX_LENGTH].rstrip(". ")
    return name


def extension(name: str) -> str:
    """The name's extension, lower case, without the dot ("" for none)."""
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem and ext.isascii() and ext.isalnum() else ""


def guess_type(name: str) -> str:
    """The file's type as its extension names it (application/octet-stream for none)."""
    guessed, _ = _TYPES.guess_type(name, strict=False)
    return guessed or UNKNOWN_TYPE


def served_type(file_type: str) -> str:
    """The Content-Type a file of this type is downloaded with."""
    return file_type if file_type in SERVED_AS_ITSELF else UNKNOWN_TYPE


def content_disposition(name: str) -> str:
    """`attachment` with the name twice, as RFC 6266 asks: an ASCII fallback for old
    clients in `filename`, the name itself in `filename*` (RFC 8187, UTF-8)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = "".join(char if 32 <= ord(char) < 127 and char not in '"\\' else "_" for char in ascii_name)
    ascii_name = ascii_name.strip() or "file"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


@dataclass(frozen=True)
class FileKind:
    """How a file card draws a type: `key` names its colour (CSS file-card--<key>),
    `badge` the few letters on its icon, `label` the words under its name."""

    key: str
    badge: str
    label: str


_KINDS = {
    "pdf": ("pdf", "PDF document"),
    "archive": ("archive", "Archive"),
    "program": ("program", "Program"),
    "document": ("document", "Document"),
    "spreadsheet": ("spreadsheet", "Spreadsheet"),
    "presentation": ("presentation", "Presentation"),
    "image": ("image", "Image"),
    "audio": ("audio", "Audio"),
    "video": ("video", "Video"),
    "text": ("text", "Text"),
    "file": ("file", "File"),
}
_KIND_BY_EXTENSION = {
    extension: key
    for key, extensions in [
        ("pdf", "pdf"),
        ("archive", "zip gz tgz tar 7z rar bz2 xz zst iso"),
        ("program", "exe msi dmg pkg deb rpm apk app appimage bat cmd com scr sh ps1 jar bin run vbs"),
        ("document", "doc docx odt rtf pages epub"),
        ("spreadsheet", "xls xlsx ods csv tsv numbers"),
        ("presentation", "ppt pptx odp key"),
        ("text", "txt md log json xml yaml yml html htm css js py"),
    ]
    for extension in extensions.split()
}


def kind(name: str, file_type: str) -> FileKind:
    """The card's icon and words for a file."""
    ext = extension(name)
    key = _KIND_BY_EXTENSION.get(ext)
    if key is None:
        major = file_type.split("/", 1)[0]
        key = major if major in {"image", "audio", "video", "text"} else "file"
    css, label = _KINDS[key]
    badge = ext.upper() if ext and len(ext) <= 4 else label.split()[0][:4].upper()
    return FileKind(css, badge, label)
