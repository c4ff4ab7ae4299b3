"""Tariff versions pushed by the operator, in the running service: the ``tariff`` request
(from the MQTT command, over the status socket) validates the entry like the file, keeps it in
``tariffs-pushed.json``, records it as a ``tariff_pushed`` event with its SHA-256 and hands the
station model the new tariff book; at every start and reload the kept entries join the
config's tariffs (:func:`config_with_pushed`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from agent.billing.pushed import (
    TariffRefused,
    entry_sha256,
    load_pushed,
    save_pushed,
    validate_entry,
    with_pushed,
)
from agent.config.schema import Config
from agent.ledger import Ledger
from agent.records.bodies import EventBody, body_to_dict
from agent.records.envelope import Record, iso_ts
from agent.station.model import StationModel
from agent.station.money import apply_book, tariff_book

log = logging.getLogger("evgw.tariffs")


def config_with_pushed(config: Config) -> Config:
    """``config`` with the entries pushed so far (a damaged file is logged and left out)."""
    try:
        return with_pushed(config, load_pushed(config.gateway.state_dir))
    except ValueError as exc:
        log.error("pushed tariffs not used: %s", exc)
        return config


class TariffDesk:
    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        model: StationModel,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._ledger = ledger
        self._model = model
        self._clock = clock

    async def tariff(self, request: dict[str, Any]) -> dict[str, Any]:
        """``tariff {"tariff": {entry}, "command_id": …}``: ``{"ok": true, "result": …}``
        once the entry is kept, recorded and in the model, else the reasons and nothing
        changed."""
        entry = request.get("tariff")
        if not isinstance(entry, dict):
            return {"ok": False, "error": "tariff: expected the entry as an object"}
        now = self._clock()
        state_dir = self._config.gateway.state_dir
        try:
            section = validate_entry(entry, self._config, now)
            kept = [*load_pushed(state_dir), section]
        except (TariffRefused, ValueError) as exc:
            return {"ok": False, "error": str(exc)}
        digest = entry_sha256(section)
        save_pushed(state_dir, kept)
        self._config = with_pushed(self._config, [section])
        details = {
            "tariff_id": section.id,
            "valid_from": section.valid_from,
            "sha256": digest,
            "command_id": str(request.get("command_id") or "")[:128],
            "entry": msgspec.to_builtins(section),
        }
        event = EventBody(
            event="tariff_pushed",
            message=f"tariff {section.id} from {section.valid_from} (sha256 {digest[:16]})",
            details=details,
        )
        await self._ledger.append(
            Record(
                kind="event",
                ts=iso_ts(now),
                station_id=self._config.station.station_id,
                body=body_to_dict(event),
            )
        )
        book = tariff_book(self._config)
        assert book is not None  # a pushed entry is a version of a configured tariff
        apply_book(self._model.connectors.values(), book, self._config.sampling.max_session_h)
        log.info("tariff %s pushed, in force from %s", section.id, section.valid_from)
        return {"ok": True, "result": details}
