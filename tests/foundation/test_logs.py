"""Logging: secrets are redacted from every line, whatever logged them."""

from __future__ import annotations

import logging

import pytest

from agent.service.logs import register_secrets, setup_logging


def test_registered_secret_never_reaches_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("debug")
    register_secrets(["S3cr3tValue-123", "abc"])
    log = logging.getLogger("evgw.test")
    log.warning("connecting with password %s to %s", "S3cr3tValue-123", "broker:8883")
    try:
        raise ValueError("bad key S3cr3tValue-123")
    except ValueError:
        log.exception("failed")
    err = capsys.readouterr().err
    assert "S3cr3tValue-123" not in err
    assert "connecting with password *** to broker:8883" in err
    assert "bad key ***" in err
    # short values are not redacted (they would mangle ordinary words)
    log.info("abc stays")
    assert "abc stays" in capsys.readouterr().err


def test_log_level_applies(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("warning")
    logging.getLogger("evgw.test").info("hidden")
    logging.getLogger("evgw.test").error("shown")
    err = capsys.readouterr().err
    assert "hidden" not in err and "ERROR evgw.test: shown" in err
