"""Sampling a server with py-spy while the benchmark runs, and reading the result.

py-spy is not a project dependency; install it anywhere (`pip install --target /tmp/pyspy
py-spy`) and pass `--py-spy /tmp/pyspy/bin/py-spy` to bench/fanout.py. The samples are
written as collapsed stacks (one "frame;frame;frame count" line each), which flamegraph.pl
and speedscope read; `python -m bench.sampling FILE` prints where the time went.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Leaf frames that mean a thread is waiting, not working.
IDLE_LEAVES = (
    "select (selectors",
    "poll (selectors",
    "wait (threading",
    "_wait_for_tstate_lock (threading",
    "_worker (concurrent",
    "get (queue",
)


class Sampler:
    """py-spy recording one process until stopped."""

    def __init__(self, py_spy: str, pid: int, output: Path, rate: int = 100) -> None:
        self.output = output
        self.process = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                str(rate),
                "--nonblocking",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _function(frame: str) -> str:
    """'name (path/file.py:123)' without the line number, so a function counts once."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0]})" if where else name


def summarize(path: Path, top: int = 40) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if any(idle in frames[-1] for idle in IDLE_LEAVES):
            continue
        n = int(count)
        busy += n
        own[_function(frames[-1])] += n
        for function in dict.fromkeys(_function(f) for f in frames):
            inclusive[function] += n
    if not busy:
        return f"{path}: no busy samples"
    lines = [f"{path}: {busy} busy samples", "  inclusive:"]
    lines += [f"    {100 * n / busy:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines.append("  own time:")
    lines += [f"    {100 * n / busy:5.1f}%  {name}" for name, n in own.most_common(top // 2)]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Where the busy samples of a py-spy raw file went.")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=40)
    options = parser.parse_args()
    for file in options.files:
        print(summarize(file, options.top))
    sys.exit(0)
