"""The GB/T 27930 phase machine (spec §5.4) as data: which observation moves which phase where.

Every decoded message is one :class:`Observation` (:func:`observe`); :data:`TRANSITIONS` maps an
observation and the current phase (``None``: no session is open) to one :class:`Transition`,
an action with its target phase and reason. The tracker (:mod:`drivers.gbt27930.tracker`)
applies it; nothing here has state.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import NamedTuple

from drivers.gbt27930.enums import ReadyState, RecognitionResult
from drivers.gbt27930.events import Phase
from drivers.gbt27930.messages import (
    BCL,
    BCP,
    BCS,
    BEM,
    BHM,
    BMT,
    BMV,
    BRM,
    BRO,
    BSD,
    BSM,
    BSP,
    BST,
    CCS,
    CEM,
    CHM,
    CML,
    CRM,
    CRO,
    CSD,
    CST,
    CTS,
    Message,
    Unknown,
)


class Observation(StrEnum):
    """What a message tells the phase machine."""

    HANDSHAKE = "handshake"  # CHM
    BHM = "bhm"
    CRM_00 = "crm_00"  # CRM(0x00): recognition opens
    BRM = "brm"
    CRM_AA = "crm_aa"  # CRM(0xAA): the charger accepted the BRM
    CONFIG = "config"  # BCP, CTS, CML, BRO, CRO other than 0xAA
    CRO_AA = "cro_aa"  # CRO(0xAA): the charger is ready, charging starts
    CHARGING = "charging"  # BCL, BCS, CCS, BSM, BMV, BMT, BSP
    STOP = "stop"  # BST, CST
    STATISTICS = "statistics"  # BSD, CSD
    ERROR = "error"  # BEM, CEM
    OTHER = "other"  # CRM with another code, DM1–DM6, payloads that could not be decoded


class Op(Enum):
    NEW = "new"  # open a session in the target phase
    GOTO = "goto"  # move to the target phase
    STAY = "stay"
    RECONNECT = "reconnect"  # CRM(0x00) after recognition: count an attempt, back to RECOGNITION
    RESTART = "restart"  # CHM/BHM mid-session: reconnect after an error, else lost + new
    CLOSE_NEW = "close_new"  # the previous session is finished: close it, open a new one


class Transition(NamedTuple):
    op: Op
    target: Phase | None
    reason: str  # "normal", "missed_crm_aa", "joined_late", … (PhaseTime.reason)


#: the reason of a session opened by a message that belongs after the handshake
JOINED_LATE = "joined_late"

H, R, C, G, S, T = (
    Phase.HANDSHAKE,
    Phase.RECOGNITION,
    Phase.CONFIGURATION,
    Phase.CHARGING,
    Phase.STOPPING,
    Phase.STATISTICS,
)
_STAY = Transition(Op.STAY, None, "")
_RESTART = Transition(Op.RESTART, H, "restart")


def _row(none: Transition, **by_phase: Transition) -> dict[Phase | None, Transition]:
    row: dict[Phase | None, Transition] = {None: none}
    for p in Phase:
        row[p] = by_phase.get(p.name, _STAY)
    return row


#: observation → current phase (None = no open session) → transition; unnamed phases stay
TRANSITIONS: dict[Observation, dict[Phase | None, Transition]] = {
    Observation.HANDSHAKE: _row(
        Transition(Op.NEW, H, "normal"),
        RECOGNITION=_RESTART,
        CONFIGURATION=_RESTART,
        CHARGING=_RESTART,
        STOPPING=_RESTART,
        STATISTICS=Transition(Op.CLOSE_NEW, H, "normal"),
    ),
    # the BMS keeps answering the handshake for a moment after CRM(0x00) (capture line 146)
    Observation.BHM: _row(
        Transition(Op.NEW, H, "normal"),
        CONFIGURATION=_RESTART,
        CHARGING=_RESTART,
        STOPPING=_RESTART,
        STATISTICS=Transition(Op.CLOSE_NEW, H, "normal"),
    ),
    Observation.CRM_00: _row(
        Transition(Op.NEW, R, "normal"),
        HANDSHAKE=Transition(Op.GOTO, R, "normal"),
        CONFIGURATION=Transition(Op.RECONNECT, R, "reconnect"),
        CHARGING=Transition(Op.RECONNECT, R, "reconnect"),
        STOPPING=Transition(Op.RECONNECT, R, "reconnect"),
        STATISTICS=Transition(Op.CLOSE_NEW, R, "normal"),
    ),
    Observation.BRM: _row(
        Transition(Op.NEW, R, JOINED_LATE),
        HANDSHAKE=Transition(Op.GOTO, R, "missed_crm_00"),
    ),
    Observation.CRM_AA: _row(
        Transition(Op.NEW, C, JOINED_LATE),
        HANDSHAKE=Transition(Op.GOTO, C, "normal"),
        RECOGNITION=Transition(Op.GOTO, C, "normal"),
    ),
    Observation.CONFIG: _row(
        Transition(Op.NEW, C, JOINED_LATE),
        HANDSHAKE=Transition(Op.GOTO, C, "missed_crm_aa"),
        RECOGNITION=Transition(Op.GOTO, C, "missed_crm_aa"),
    ),
    Observation.CRO_AA: _row(
        Transition(Op.NEW, G, JOINED_LATE),
        HANDSHAKE=Transition(Op.GOTO, G, "missed_configuration"),
        RECOGNITION=Transition(Op.GOTO, G, "missed_configuration"),
        CONFIGURATION=Transition(Op.GOTO, G, "normal"),
    ),
    Observation.CHARGING: _row(
        Transition(Op.NEW, G, JOINED_LATE),
        HANDSHAKE=Transition(Op.GOTO, G, "missed_cro_aa"),
        RECOGNITION=Transition(Op.GOTO, G, "missed_cro_aa"),
        CONFIGURATION=Transition(Op.GOTO, G, "missed_cro_aa"),
    ),
    Observation.STOP: _row(
        Transition(Op.NEW, S, JOINED_LATE),
        HANDSHAKE=Transition(Op.GOTO, S, "normal"),
        RECOGNITION=Transition(Op.GOTO, S, "normal"),
        CONFIGURATION=Transition(Op.GOTO, S, "normal"),
        CHARGING=Transition(Op.GOTO, S, "normal"),
    ),
    Observation.STATISTICS: _row(
        Transition(Op.NEW, T, JOINED_LATE),
        HANDSHAKE=Transition(Op.GOTO, T, "normal"),
        RECOGNITION=Transition(Op.GOTO, T, "normal"),
        CONFIGURATION=Transition(Op.GOTO, T, "normal"),
        CHARGING=Transition(Op.GOTO, T, "missed_stop"),
        STOPPING=Transition(Op.GOTO, T, "normal"),
    ),
    Observation.ERROR: _row(Transition(Op.NEW, H, JOINED_LATE)),
    Observation.OTHER: _row(_STAY),
}


#: message type → observation, for the types whose observation does not depend on content
OBSERVATION_OF_TYPE: dict[type[Message], Observation] = {
    BCL: Observation.CHARGING,
    CCS: Observation.CHARGING,
    BSM: Observation.CHARGING,
    BCS: Observation.CHARGING,
    BMV: Observation.CHARGING,
    BMT: Observation.CHARGING,
    BSP: Observation.CHARGING,
    CHM: Observation.HANDSHAKE,
    BHM: Observation.BHM,
    BRM: Observation.BRM,
    BCP: Observation.CONFIG,
    CTS: Observation.CONFIG,
    CML: Observation.CONFIG,
    BRO: Observation.CONFIG,
    BST: Observation.STOP,
    CST: Observation.STOP,
    BSD: Observation.STATISTICS,
    CSD: Observation.STATISTICS,
    BEM: Observation.ERROR,
    CEM: Observation.ERROR,
}


def observe(msg: Message) -> Observation | None:
    """The observation a message is for the phase table (None: not GB/T activity)."""
    fixed = OBSERVATION_OF_TYPE.get(type(msg))
    if fixed is not None:
        return fixed
    match msg:
        case CRM(recognition_result=RecognitionResult.NOT_RECOGNISED):
            return Observation.CRM_00
        case CRM(recognition_result=RecognitionResult.RECOGNISED):
            return Observation.CRM_AA
        case CRO(charger_ready=ReadyState.READY):
            return Observation.CRO_AA
        case CRO():
            return Observation.CONFIG
        case Unknown():
            return None
        case _:  # CRM with another code, DM1–DM6, payloads that could not be decoded
            return Observation.OTHER
