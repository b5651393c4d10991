"""The demo's output: event lines that stay, and one live status line.

On a terminal the status line is rewritten in place (``\\r`` + clear to end of line) and the event lines are
printed above it. Elsewhere (pipes, CI logs) the status line is printed as a plain line whenever its text changes,
and at least every ``heartbeat`` seconds while something runs, so a log never sits silent for long.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

SPINNER = "|/-\\"


def fmt_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def bar(fraction: float, width: int = 20) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    full = int(round(fraction * width))
    return "[" + "#" * full + "." * (width - full) + "]"


class StatusLine:
    def __init__(self, out: TextIO | None = None, *, tty: bool | None = None, heartbeat: float = 5.0) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.heartbeat = heartbeat
        self._shown = ""
        self._last_text = ""
        self._last_plain = 0.0
        self._tick = 0
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _clear(self) -> None:
        if self.tty and self._shown:
            self.out.write("\r\x1b[2K")
            self._shown = ""

    def event(self, text: str) -> None:
        """A line that stays (a transition, a result)."""
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()
        if self.tty and self._last_text:
            self._render(self._last_text)

    def update(self, text: str) -> None:
        """The live line: what runs now."""
        self._last_text = text
        self._render(text)

    def _render(self, text: str) -> None:
        now = time.monotonic()
        if self.tty:
            self._tick += 1
            width = shutil.get_terminal_size((120, 20)).columns
            line = f"{SPINNER[self._tick % 4]} [{fmt_seconds(self.elapsed()):>6}] {text}"
            if len(line) > width - 1:
                line = line[: width - 2] + "…"
            self.out.write("\r\x1b[2K" + line)
            self.out.flush()
            self._shown = line
            return
        if text != self._shown or now - self._last_plain >= self.heartbeat:
            self.out.write(f"  [{fmt_seconds(self.elapsed()):>6}] {text}\n")
            self.out.flush()
            self._shown = text
            self._last_plain = now

    def done(self) -> None:
        self._clear()
        self._last_text = ""
        self.out.flush()
