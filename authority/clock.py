"""The clock every time-dependent part takes, so tests can move time by hand."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


def system_clock() -> float:
    return time.time()
