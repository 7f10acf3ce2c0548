"""The service's log (README, "Logs"): one JSON object per line on standard error.

``authority serve`` hands ``log_config(...)`` to uvicorn, which applies it in the
server process and again in each worker process. Every line is
``{"time", "level", "logger", ...}``: the access log (``authority.access``) and the
audit trail (``authority.audit``) build their own JSON object, whose members follow
those three; any other record carries ``message`` (and ``exception``, a traceback kept
on the same line). The ``authority`` loggers write INFO and above, everything else
WARNING and above; ``access_log=False`` silences the access log alone.

The access log is one line per request, so its cost counts: a line is built by string
splicing, never parsed again, and the request only queues it; a thread formats and
writes what piled up, a few system calls a second however busy the server is
(``BufferedStderr``).
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import sys
import threading
import time
from typing import Any, TextIO

ACCESS_LOGGER = "authority.access"
AUDIT_LOGGER = "authority.audit"
# Loggers whose messages are already one JSON object: their members are spliced in.
JSON_LOGGERS = frozenset({ACCESS_LOGGER, AUDIT_LOGGER})
INTERVAL = 0.05  # seconds an access-log line may wait to be written with others
MAX_PENDING = 100_000  # access-log lines waiting to be written, at most
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
        message = record.getMessage()
        if record.name in JSON_LOGGERS and message[:1] == "{" and not record.exc_info:
            return self.spliced(record.created, record.levelname, record.name, message)
        start = self._start(record.created, record.levelname, record.name)
        fields: dict[str, Any] = {"message": message}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return start + "," + json.dumps(fields, separators=(",", ":"))[1:]

    def spliced(self, created: float, level: str, logger: str, message: str) -> str:
        """The line of a message that is one JSON object: its members follow the head.
        ``BufferedStderr`` calls it for access lines directly, without a LogRecord."""
        start = self._start(created, level, logger)
        return start + ("," + message[1:] if message != "{}" else "}")

    def _start(self, created: float, level: str, logger: str) -> str:
        head = self._heads.get((level, logger))
        if head is None:
            head = f'"level":{json.dumps(level)},"logger":{json.dumps(logger)}'
            self._heads[(level, logger)] = head
        return f'{{"time":"{self._time(created)}",{head}'

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"


_sink: BufferedStderr | None = None  # the server's handler, once log_config is applied


def access(line: str) -> None:
    """Log one access line (a JSON object). In a server process this only appends it
    to the writer thread's queue, skipping the logging module's per-record work (a
    LogRecord, handler locks: about 15 µs); elsewhere it is an ordinary INFO record of
    ``authority.access``. Callers check ``isEnabledFor(INFO)`` first."""
    sink = _sink
    if sink is not None:
        sink.queue_line(time.time(), line)
    else:
        logging.getLogger(ACCESS_LOGGER).info(line)


class BufferedStderr(logging.Handler):
    """Writes records to standard error as ``JsonLines``. Access-log lines are
    collected and written together by a thread of its own at most ``INTERVAL`` later,
    a few system calls a second however busy the server is; any other record is
    written at once, after the access lines collected before it, so the log keeps its
    order and nothing but access lines can be lost when a process is killed."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream
        self._pending: collections.deque[logging.LogRecord | tuple[float, str]] = (
            collections.deque()
        )
        self._waking = False
        self._wake = threading.Event()
        self._writing = threading.Lock()
        self._dropped = 0
        threading.Thread(target=self._run, name="authority-access-log", daemon=True).start()
        atexit.register(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == ACCESS_LOGGER and record.levelno == logging.INFO:
            self._queue(record)
            return
        self._write(record)

    def queue_line(self, created: float, line: str) -> None:
        """An access line, written by the thread (``access``)."""
        self._queue((created, line))

    def _queue(self, item: logging.LogRecord | tuple[float, str]) -> None:
        if len(self._pending) >= MAX_PENDING:  # stderr is stuck: keep memory bounded
            self._dropped += 1
            return
        self._pending.append(item)  # no lock, no system call: once per request
        if not self._waking:
            self._waking = True
            self._wake.set()

    def flush(self) -> None:
        self._write(None)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(INTERVAL)  # let lines pile up: one write for all of them
            self._wake.clear()
            self._waking = False  # before taking the lines: a later one wakes us again
            self._write(None)

    def _write(self, record: logging.LogRecord | None) -> None:
        with self._writing:
            records = [self._pending.popleft() for _ in range(len(self._pending))]
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                records.append(_dropped_lines(dropped))
            if record is not None:
                records.append(record)
            chunk: list[str] = []
            size = 0
            for each in records:
                try:
                    line = self._format(each) + "\n"
                except Exception:  # logging reports it on stderr; the log goes on
                    self.handleError(each if isinstance(each, logging.LogRecord) else _bad(each))
                    continue
                if chunk and size + len(line) > PIPE_BUF:
                    self._put(chunk)
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            self._put(chunk)

    def _format(self, item: logging.LogRecord | tuple[float, str]) -> str:
        if isinstance(item, logging.LogRecord):
            return self.format(item)
        created, line = item  # an access line, as the logging module would have made it
        formatter = self.formatter
        if isinstance(formatter, JsonLines) and line[:1] == "{":
            # Once per request: a LogRecord for it cost more than the rest of the line.
            return formatter.spliced(created, "INFO", ACCESS_LOGGER, line)
        record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, line, None, None)
        record.created = created
        return self.format(record)

    def _put(self, lines: list[str]) -> None:
        if not lines:
            return
        stream = self.stream or sys.stderr
        try:
            stream.write("".join(lines))
            stream.flush()
        except (OSError, ValueError):  # standard error is closed: nowhere left to say it
            pass


def _bad(item: tuple[float, str]) -> logging.LogRecord:
    return logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, item[1], None, None)


def server_handler() -> BufferedStderr:
    """The handler of ``log_config``: the process's access lines go straight to it."""
    global _sink
    _sink = BufferedStderr()
    return _sink


def _dropped_lines(count: int) -> logging.LogRecord:
    return logging.LogRecord(
        ACCESS_LOGGER + ".dropped", logging.WARNING, __file__, 0,
        f"{count} access-log lines were dropped: standard error did not keep up",
        None, None,
    )  # fmt: skip


def log_config(*, access_log: bool = True) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` document of a server process."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLines}},
        "handlers": {"stderr": {"()": server_handler, "formatter": "json"}},
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "loggers": {
            "authority": {"level": "INFO"},
            ACCESS_LOGGER: {"level": "INFO" if access_log else "WARNING"},
            # uvicorn's own lines (started, listening, stopping) as JSON too.
            "uvicorn": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "uvicorn.error": {"level": "INFO"},
        },
    }
