"""The JSON lines of one logger, caught on that logger itself: Litestar's startup
reconfigures the root logger, which drops pytest's caplog handler."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[dict[str, Any]] = []
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text += record.getMessage()
        self.lines.append(json.loads(record.getMessage()))


@contextlib.contextmanager
def caught(name: str) -> Iterator[Lines]:
    """Every INFO-and-above line of logger ``name`` while the block runs."""
    logger = logging.getLogger(name)
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
