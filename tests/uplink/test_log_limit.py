"""LogLimiter: the first line of a kind with its context, then one summary per interval."""

from __future__ import annotations

import logging

import pytest

from agent.uplink.log_limit import LogLimiter


def test_first_logged_then_summed_up(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limiter = LogLimiter(logging.getLogger("evgw.test.limit"), interval_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="evgw.test.limit"):
        assert limiter.log(logging.WARNING, "k", "refused %s", 1) is True
        for i in range(99):
            now[0] = 0.5 * i
            assert limiter.log(logging.WARNING, "k", "refused %s", i) is False
        assert limiter.log(logging.WARNING, "other", "another kind") is True
        now[0] = 61.0
        assert limiter.log(logging.WARNING, "k", "refused %s", 100) is True
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "refused 1",
        "another kind",
        "refused 100 (99 more like this in the last 60 s)",
    ]
