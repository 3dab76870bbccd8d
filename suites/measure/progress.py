"""A progress bar with an ETA on stderr: tqdm when installed, a plain fallback otherwise."""

from __future__ import annotations

import sys
import time


def _fmt_seconds(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """``update(text)`` after each finished cell; ``close()`` at the end."""

    def __init__(self, total: int, enabled: bool = True, stream=None, min_interval_s: float = 2.0):
        self.total, self.done = total, 0
        self.enabled = enabled and total > 0
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._bar = None
        if self.enabled:
            try:
                from tqdm import tqdm  # optional (not a dependency): plain progress lines without it
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, file=self.stream, unit="cell", dynamic_ncols=True)

    def set_total(self, total: int) -> None:
        """Change the amount of work (known only after a first pass, e.g. timing rounds)."""
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def eta_s(self) -> float | None:
        if self.done == 0:
            return None
        elapsed = time.perf_counter() - self.start
        return elapsed / self.done * (self.total - self.done)

    def line(self, text: str = "") -> str:
        elapsed = time.perf_counter() - self.start
        eta = self.eta_s()
        pct = 100.0 * self.done / self.total if self.total else 100.0
        width = len(str(self.total))
        eta_text = _fmt_seconds(eta) if eta is not None else "?"
        return (f"[{self.done:>{width}}/{self.total}] {pct:3.0f}% elapsed {_fmt_seconds(elapsed)} "
                f"ETA {eta_text}  {text}")

    def update(self, text: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(text[:60], refresh=False)
            self._bar.update(1)
            return
        now = time.perf_counter()
        tty = getattr(self.stream, "isatty", lambda: False)()
        if tty:
            self.stream.write("\r\033[K" + self.line(text)[:150])
            self.stream.flush()
        elif now - self._last >= self.min_interval_s or self.done == self.total:
            self.stream.write(self.line(text) + "\n")
            self.stream.flush()
            self._last = now

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\n")
            self.stream.flush()
