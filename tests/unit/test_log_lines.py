"""The server's log lines (README, "Logs"): one JSON object per line, the access and
audit lines with their own members after ``time``, ``level`` and ``logger``, anything
else with ``message`` (a traceback stays on the line); access lines are written in
batches, and any other line after the access lines that came before it."""

from __future__ import annotations

import io
import json
import logging
import sys
import time

import pytest

from authority import logs
from authority.logs import BufferedStderr, JsonLines


def record(
    name: str, message: str, level: int = logging.INFO, **extra: object
) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, message, None, None)
    made.__dict__.update(extra)
    return made


def test_access_and_audit_lines_keep_their_members_after_time_level_and_logger() -> None:
    access = record("authority.access", '{"method":"GET","route":"/x","status":200}')
    access.created = 1790000000.25
    line = JsonLines().format(access)
    assert line.startswith('{"time":"2026-09-21T14:13:20.250Z","level":"INFO",')
    assert json.loads(line) == {
        "time": "2026-09-21T14:13:20.250Z",
        "level": "INFO",
        "logger": "authority.access",
        "method": "GET",
        "route": "/x",
        "status": 200,
    }
    audit = JsonLines().format(record("authority.audit", '{"audit":{"type":"login.failed"}}'))
    assert json.loads(audit)["audit"] == {"type": "login.failed"}


def test_other_records_carry_a_message_and_the_traceback_on_the_same_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        failed = record("authority", "failed %s", logging.ERROR, exc_info=sys.exc_info())
    failed.args = ("badly",)
    line = JsonLines().format(failed)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed badly"
    assert parsed["level"] == "ERROR"
    assert "ValueError: boom\nsecond line" in parsed["exception"]
    # A message that looks like JSON from any other logger is still a message.
    plain = json.loads(JsonLines().format(record("uvicorn.error", '{"not": "spliced"}')))
    assert plain["message"] == '{"not": "spliced"}'


def test_a_warning_is_written_at_once_after_the_access_lines_before_it() -> None:
    out = io.StringIO()
    handler = BufferedStderr(out)
    handler.setFormatter(JsonLines())
    for n in range(3):
        handler.handle(record("authority.access", f'{{"n":{n}}}'))
    handler.handle(record("authority.keys", "key store unreadable", logging.WARNING))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line.get("n", line.get("message")) for line in lines] == [
        0,
        1,
        2,
        "key store unreadable",
    ]


def test_access_lines_alone_are_written_by_the_thread_soon_after() -> None:
    out = io.StringIO()
    handler = BufferedStderr(out)
    handler.setFormatter(JsonLines())
    handler.handle(record("authority.access", '{"n":1}'))
    deadline = time.monotonic() + 5
    while not out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert json.loads(out.getvalue())["n"] == 1


def test_when_stderr_cannot_keep_up_lines_are_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logs, "MAX_PENDING", 3)
    monkeypatch.setattr(logs, "INTERVAL", 3600.0)  # the thread stays asleep
    out = io.StringIO()
    handler = BufferedStderr(out)
    handler.setFormatter(JsonLines())
    for n in range(5):
        handler.handle(record("authority.access", f'{{"n":{n}}}'))
    handler.flush()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line.get("n") for line in lines[:3]] == [0, 1, 2]
    assert lines[3]["level"] == "WARNING"
    assert lines[3]["message"].startswith("2 access-log lines were dropped")


def test_in_a_server_process_access_lines_skip_the_logging_module() -> None:
    """``log_config``'s handler takes ``logs.access`` lines straight into its queue;
    they come out exactly as an ``authority.access`` record would."""
    assert logs._sink is None  # outside a server: an ordinary record (test_request_ids)
    handler = logs.server_handler()
    try:
        out = io.StringIO()
        handler.stream = out
        handler.setFormatter(JsonLines())
        root = logging.getLogger()
        assert handler not in root.handlers  # nothing but the queue can have written it
        logs.access('{"method":"POST","route":"/oauth/token","status":200}')
        handler.handle(record("authority.keys", "after it", logging.WARNING))
        first, second = (json.loads(line) for line in out.getvalue().splitlines())
        assert first["logger"] == "authority.access"
        assert first["level"] == "INFO"
        assert first["route"] == "/oauth/token"
        assert first["time"].endswith("Z")
        assert second["message"] == "after it"
    finally:
        logs._sink = None
