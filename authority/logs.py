"""The service's log (README, "Logs"): one JSON object per line on standard error.

``authority serve`` hands ``log_config(...)`` to uvicorn, which applies it in the
server process and again in each worker process. Every line is
``{"time", "level", "logger", ...}``: the access log (``authority.access``) and the
audit trail (``authority.audit``) build their own JSON object, whose members follow
those three; any other record carries ``message`` (and ``exception``, a traceback kept
on the same line). The ``authority`` loggers write INFO and above, everything else
WARNING and above; ``access_log=False`` silences the access log alone.

The access log is one line per request, so its cost counts: a line is formatted by
string splicing, never parsed again, and handed to a writer thread that writes what
has piled up in one system call (``BackgroundStderr``), so neither the formatting of
an error's traceback nor a slow terminal or pipe holds up the event loop.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sys
import threading
import time
from typing import Any, TextIO

ACCESS_LOGGER = "authority.access"
AUDIT_LOGGER = "authority.audit"
# Loggers whose messages are already one JSON object: their members are spliced in.
JSON_LOGGERS = frozenset({ACCESS_LOGGER, AUDIT_LOGGER})
MAX_BATCH = 512  # records taken from the queue at once by the writer thread
# Workers share standard error: a write of at most PIPE_BUF bytes to a pipe is never
# interleaved with another process's (POSIX), so lines are written in such chunks.
PIPE_BUF = 4096


class JsonLines(logging.Formatter):
    """``{"time": ISO 8601 UTC with milliseconds, "level", "logger", ...}`` on one line."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""
        self._heads: dict[tuple[str, str], str] = {}

    def format(self, record: logging.LogRecord) -> str:
        head = self._heads.get((record.levelname, record.name))
        if head is None:
            head = f'"level":{json.dumps(record.levelname)},"logger":{json.dumps(record.name)}'
            self._heads[(record.levelname, record.name)] = head
        start = f'{{"time":"{self._time(record.created)}",{head}'
        message = record.getMessage()
        if record.name in JSON_LOGGERS and message[:1] == "{" and not record.exc_info:
            return start + ("," + message[1:] if message != "{}" else "}")
        fields: dict[str, Any] = {"message": message}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exception"] = record.exc_text
        return start + "," + json.dumps(fields, separators=(",", ":"))[1:]

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"


class BackgroundStderr(logging.Handler):
    """Formats and writes records to standard error in a thread of its own, several
    lines per write when they pile up. Records still queued at exit are written."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream
        self._queue: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="authority-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def emit(self, record: logging.LogRecord) -> None:
        if record.args:  # the message as it reads now, not when the writer gets to it
            record.msg, record.args = record.getMessage(), None
        self._queue.put(record)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(5)
        super().close()

    def _write(self) -> None:
        while True:
            batch = [self._queue.get()]
            while batch[-1] is not None and len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            chunk: list[str] = []
            size = 0
            for record in batch:
                if record is None:
                    continue
                try:
                    line = self.format(record) + "\n"
                except Exception:  # a record that cannot be formatted is reported, not lost
                    self.handleError(record)
                    continue
                if chunk and size + len(line) > PIPE_BUF:
                    self._flush(chunk)
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            self._flush(chunk)
            if batch[-1] is None:
                return

    def _flush(self, lines: list[str]) -> None:
        if not lines:
            return
        stream = self.stream or sys.stderr
        try:
            stream.write("".join(lines))
            stream.flush()
        except (OSError, ValueError):  # standard error is closed: nowhere left to say it
            pass


def log_config(*, access_log: bool = True) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` document of a server process."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLines}},
        "handlers": {"stderr": {"()": BackgroundStderr, "formatter": "json"}},
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "loggers": {
            "authority": {"level": "INFO"},
            ACCESS_LOGGER: {"level": "INFO" if access_log else "WARNING"},
            # uvicorn's own lines (started, listening, stopping) as JSON too.
            "uvicorn": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "uvicorn.error": {"level": "INFO"},
        },
    }
