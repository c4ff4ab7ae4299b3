"""The MQTT command ``config.apply``: a complete ``evgw.toml`` for the running service.

The command's ``toml`` (never secrets) is handed to ``evgw config apply`` as a technician
would run it: the running service validates it in full, applies only the parts that changed
and keeps it only when every bus, meter and uplink that worked before works again within
``timeout_s`` (default ``gateway.apply_timeout_s``), else restores the previous config
(:mod:`agent.service.apply`; the uplinks do not import the service, so the request goes
through the status socket like ``evgw status``). The reply's ``result`` is the service's
answer: ``outcome`` (``applied``, ``unchanged``, ``rolled_back``, ``refused``), ``sha256``,
``changes``, ``parts``, ``reason`` or ``problems``.

A config that changes ``[uplinks.mqtt]`` (or the station, which every uplink names) rebuilds
this uplink while the command runs: its reply is then not published by the uplink that
received it; the outcome is in the ``config_applied`` / ``config_rolled_back`` event the new
uplink delivers, and ``config.get`` shows the running config.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Final

from agent.uplink.mqtt.command_context import ServiceContext, evgw_child, first_line
from agent.uplink.mqtt.command_roles import Refused

MAX_TOML_BYTES: Final = 32_768
"""As :data:`agent.service.apply.MAX_CONFIG_BYTES` (the service refuses longer ones too)."""
ANSWER_MARGIN_S: Final = 60.0
"""Beyond the apply and a rollback (each at most ``timeout_s``), how long to wait."""


async def apply_config(
    context: ServiceContext, toml_text: str, timeout_s: float | None, requested_by: str
) -> dict[str, Any]:
    """The service's answer to the apply, or :class:`Refused` when it could not be asked."""
    if len(toml_text.encode("utf-8", "surrogatepass")) > MAX_TOML_BYTES:
        raise Refused(f"toml longer than {MAX_TOML_BYTES} bytes")
    if timeout_s is not None and not 1 <= timeout_s <= 600:
        raise Refused(f"timeout_s {timeout_s:g} outside 1..600")
    config, running = context.config()
    wait_s = 2 * (timeout_s or config.gateway.apply_timeout_s) + ANSWER_MARGIN_S
    with tempfile.TemporaryDirectory(prefix="evgw-apply-") as folder:
        file = Path(folder) / "evgw.toml"
        file.write_text(toml_text, "utf-8", errors="surrogatepass")
        args = ["config", "apply", str(file), "--json", "--config", str(running)]
        args += ["--requested-by", requested_by[:80]]
        if timeout_s is not None:
            args += ["--timeout", str(timeout_s)]
        code, out, err = await evgw_child(args, wait_s)
    if code in (0, 1):
        try:
            answer = json.loads(out)
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            return answer
    raise Refused(f"evgw config apply failed: {first_line(err, code)}")
