"""The CLI side of the status socket: ask the running service, and turn "it is not running"
or "it does not answer" into a clear message for the technician."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.errors import UserError
from agent.service.status_socket import ask, query_status


def ask_running(
    path: Path,
    verb: str | None,
    request: dict[str, Any] | None = None,
    *,
    timeout_s: float = 10.0,
    unchanged: str = "",
) -> dict[str, Any]:
    """The service's answer to ``verb`` (``None``: its status snapshot); ``unchanged`` is
    added to the "not running" message (e.g. "nothing was applied")."""
    try:
        if verb is None:
            return query_status(path, timeout_s)
        return ask(path, verb, request or {}, timeout_s=timeout_s)
    except FileNotFoundError:
        tail = f"; {unchanged}" if unchanged else ""
        raise UserError(
            f"no status socket at {path}: is the service running? (systemctl status evgw){tail}"
        ) from None
    except PermissionError:
        raise UserError(f"permission denied on {path}: run as root or as the evgw user") from None
    except (ConnectionRefusedError, TimeoutError) as exc:
        raise UserError(f"the service did not answer on {path} ({exc})") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
