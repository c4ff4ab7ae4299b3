"""The downlink commands follow the service's config file: after a config apply replaces it,
the role keys (and the rest the commands read) come from the new file, not the first one."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.load import load_config
from agent.demo.station import write_demo_config, write_demo_secrets
from agent.uplink.mqtt.command_context import ServiceContext
from agent.uplink.mqtt.command_roles import Refused
from tests.ops.platform import PlatformKey


def test_role_keys_follow_a_replaced_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_demo_secrets(tmp_path)
    config = write_demo_config(tmp_path, 15020, "/dev/ttyDEMO645", mqtt_port=1883)
    monkeypatch.setenv("EVGW_CONFIG", str(config))
    station_id = load_config(config).station.station_id
    context = ServiceContext(station_id, None)
    assert "read" not in set(context.keys())

    read = PlatformKey().save_public(tmp_path / "read.pub")
    text = config.read_text().replace(
        "[uplinks.mqtt]\n", f'[uplinks.mqtt]\ncommand_keys = {{read = "{read}"}}\n', 1
    )
    new = config.with_name("evgw.toml.new")
    new.write_text(text)
    new.replace(config)  # as a config apply replaces it
    assert "read" in set(context.keys())
    assert context.config()[0].uplinks.mqtt is not None

    config.write_text(text.replace(f'"{station_id}"', '"ANOTHER"', 1))  # not this station
    with pytest.raises(Refused, match="not the config of station"):
        context.config()
