"""The HTTP access log: one preformatted line per request, written in batches.

uvicorn's access log goes through the `logging` module (a LogRecord, a formatter, a
handler lock and one write per request): measured at about a tenth of a device request's
CPU (docs/benchmarks.md, "Request path, 2026-12-02"). This one stands in for uvicorn's
access logger (uvicorn calls `.info(format, client, method, path, http_version, status)`
once per response), formats the line with the time text of the current second, and
appends it to a buffer written out to stdout (file descriptor 1) at most `FLUSH_SECONDS`
later, or as soon as it holds `FLUSH_BYTES`, and when the process exits.

Line: `2026-12-02T05:10:00Z 127.0.0.1:51234 "GET /passkit/v1/... HTTP/1.1" 304`.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import time
from typing import Any

FLUSH_SECONDS = 0.5
FLUSH_BYTES = 64 * 1024


class AccessLog:
    """Buffered access lines to a file descriptor. One per process (see `access_log`)."""

    def __init__(self, fd: int = 1, *, enabled: bool = True) -> None:
        self.fd = fd
        self.enabled = enabled
        self._lines: list[str] = []
        self._size = 0
        self._second = -1
        self._stamp = ""
        self._timer: asyncio.TimerHandle | None = None

    def info(
        self, _format: str, client: str, method: str, path: str, version: str, status: int
    ) -> None:
        """uvicorn's access-log call (httptools_impl.RequestResponseCycle.send)."""
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        line = f'{self._stamp} {client or "-"} "{method} {path} HTTP/{version}" {status}\n'
        self._lines.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        data = "".join(self._lines).encode("utf-8", "backslashreplace")
        self._lines.clear()
        self._size = 0
        try:
            while data:
                written = os.write(self.fd, data)
                data = data[written:]
        except BlockingIOError:
            pass  # a full non-blocking pipe: drop the batch rather than stall the server
        except OSError:
            # stdout closed: the log is lost, the server goes on serving
            self.enabled = False

    def __getattr__(self, name: str) -> Any:
        # uvicorn may call other logger methods (none today); they are no-ops here.
        if name in ("debug", "warning", "error", "exception", "log"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


_process_log: AccessLog | None = None


def access_log(*, enabled: bool) -> AccessLog:
    """This process's access log (made on first use; flushed when the process exits)."""
    global _process_log  # one per process, like a logger
    if _process_log is None:
        _process_log = AccessLog(enabled=enabled)
        atexit.register(_process_log.flush)
    _process_log.enabled = enabled
    return _process_log
