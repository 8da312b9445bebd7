"""A machine whose clock is off: with this folder on PYTHONPATH, a Python process reads
``time.time()`` and ``datetime.now()`` shifted by ``STORYFLOW_TEST_CLOCK_SKEW`` seconds (as
a clock set wrong would give them). Loaded by ``site`` at start-up, before any import of
storyflow, so ``from datetime import datetime`` there gets the shifted class."""

from __future__ import annotations

import datetime as _datetime
import os
import time as _time

_SKEW = float(os.environ.get("STORYFLOW_TEST_CLOCK_SKEW") or 0)

if _SKEW:
    _real_time = _time.time

    def _skewed_time() -> float:
        return _real_time() + _SKEW

    class _SkewedDatetime(_datetime.datetime):
        @classmethod
        def now(cls, tz: _datetime.tzinfo | None = None) -> _SkewedDatetime:
            return super().now(tz) + _datetime.timedelta(seconds=_SKEW)

        @classmethod
        def utcnow(cls) -> _SkewedDatetime:
            return cls.now()

    _time.time = _skewed_time
    _datetime.datetime = _SkewedDatetime  # type: ignore[misc]
