"""Progress reporting: a bar on a terminal, plain timestamped lines in logs."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    """Call with the number of finished units; close() when done.

    On a TTY a tqdm bar is drawn on stderr; otherwise a plain line is printed every
    ``every_fraction`` of the work (and at the end), so log files stay readable.
    """

    def __init__(self, total: int, desc: str, stream=None, every_fraction: float = 0.1,
                 enabled: bool = True, unit: str = "steps"):
        self.total = max(int(total), 1)
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self._bar = None
        self._next_report = 0.0
        self._every = every_fraction
        self._start = time.perf_counter()
        self._done = 0
        self.unit = unit
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            self._bar = tqdm(total=self.total, desc=desc, file=self.stream, unit=unit.rstrip("s"),
                             dynamic_ncols=True)

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            return
        if self._done == 0 and done > 0:
            self._start = time.perf_counter()  # do not count set-up or resumed work
            self._first = done
        self._done = done
        if done / self.total >= self._next_report or done == self.total:
            elapsed = time.perf_counter() - self._start
            rate = (done - getattr(self, "_first", 0)) / elapsed if elapsed > 0 else 0.0
            print(f"{time.strftime('%H:%M:%S')} {self.desc}: {done}/{self.total} {self.unit} "
                  f"({100.0 * done / self.total:.0f}%), {rate:.1f} {self.unit}/s",
                  file=self.stream, flush=True)
            self._next_report = done / self.total + self._every

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
