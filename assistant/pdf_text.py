"""Reads a PDF's text in a process of its own (run as a script by `assistant.files`).

A PDF is untrusted input, and a small one can cost pypdf minutes (thousands of text
operators in a page's content stream, shared by hundreds of pages, compress to a few
kilobytes). Here it can cost at most `seconds` (then it answers with the pages it has) and
is killed by its parent a little after that, whatever it is doing, with its CPU time
capped by the kernel as well; the runner's threads are never held longer.

stdin: the PDF's bytes. argv: the character limit, the most pages, the seconds.
stdout: JSON {"total": pages, "pages": [text of each page read], "encrypted": bool,
"timed_out": bool}.
"""

import io
import json
import resource
import sys
import time


def main() -> None:
    limit, max_pages, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    cpu = int(seconds) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    started = time.monotonic()
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(sys.stdin.buffer.read()))
    out: dict = {"total": 0, "pages": [], "encrypted": bool(reader.is_encrypted), "timed_out": False}
    if not out["encrypted"]:
        out["total"] = len(reader.pages)
        used = 0
        for page in reader.pages[:max_pages]:
            if time.monotonic() - started > seconds:
                out["timed_out"] = True
                break
            text = (page.extract_text() or "").strip()
            out["pages"].append(text)
            used += len(text)
            if used > limit:
                break
    sys.stdout.write(json.dumps(out))


if __name__ == "__main__":
    main()
