"""Commissioning probe (spec: meters.md §8): which units answer, at which link settings,
which profile fits, and which function code and disputed registers the meter really has.

Only reads are sent: the probe never writes to a meter.

- A valid reply **or an exception reply** proves baud, parity and unit id; only a timeout
  or a garbled reply means wrong link settings.
- Function code: exception 01 on the profile's code switches to its ``alt_function``.
- Options (disputed blocks): every choice is read; a choice that answers with an
  exception, NaN/inf, a negative energy or a value outside the plausibility range is
  rejected. If several remain and the technician entered the display's energy reading,
  the closest wins; otherwise the default is kept and reported as undecided.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from drivers.modbus.decode import plan_reads
from drivers.modbus.link import ModbusLine, ReadError, exception_text
from drivers.modbus.profile_model import Profile, Quantity, ResolvedProfile
from drivers.modbus.quantities import physical_problem

# (low, high) plausibility ranges of the commissioning procedure (spec §8.4)
_AC_PHASE_V = (80.0, 300.0)
_LINE_V = (140.0, 520.0)
_DC_V = (0.0, 1000.0)
_FREQ = (45.0, 65.0)


def probe_problem(kind: str, name: str, value: float) -> str | None:
    """Why a value read during commissioning is implausible for a meter of ``kind``."""
    problem = physical_problem(name, value)
    if problem is not None:
        return problem
    low_high: tuple[float, float] | None = None
    if name.startswith("voltage"):
        if kind == "dc":
            low_high = _DC_V
        elif name.count("_l") == 2:
            low_high = _LINE_V
        else:
            low_high = _AC_PHASE_V
    elif name == "frequency_hz" and kind != "dc":
        low_high = _FREQ
    if low_high is not None and not low_high[0] <= value <= low_high[1]:
        return f"{value:g} outside the expected {low_high[0]:g}…{low_high[1]:g}"
    return None


@dataclass(frozen=True, slots=True)
class OptionPick:
    option: str
    choice: str
    decided: bool
    evidence: str


@dataclass(frozen=True, slots=True)
class ProfileFit:
    """How well one profile explains what a unit answers."""

    profile: str
    function: int
    options: dict[str, str]
    picks: tuple[OptionPick, ...]
    plausible: int
    total: int
    values: dict[str, float] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    function_evidence: str = ""

    @property
    def score(self) -> float:
        return self.plausible / self.total if self.total else 0.0


async def unit_answers(
    line: ModbusLine, unit: int, timeout_s: float | None = None
) -> ReadError | None:
    """``None`` when the unit answered (data or an exception), else why not."""
    reply = await line.read(unit, 3, 0, 1, timeout_s)
    if isinstance(reply, ReadError) and not reply.answered:
        return reply
    return None


async def _read_quantity(line: ModbusLine, unit: int, q: Quantity) -> list[int] | ReadError:
    return await line.read(unit, q.function, q.address, q.count)


def _probe_block(profile: Profile) -> tuple[int, int]:
    """(address, count) of a read that does not depend on any disputed option."""
    disputed = {q.name for opt in profile.options for qs in opt.choices.values() for q in qs}
    plain = [q for q in profile.quantities if q.name not in disputed] or list(profile.quantities)
    q = min(plain, key=lambda x: x.address)
    return q.address, q.count


async def _choose_function(
    line: ModbusLine, unit: int, profile: Profile
) -> tuple[int, str] | ReadError:
    address, count = _probe_block(profile)
    reply = await line.read(unit, profile.function, address, count)
    if not isinstance(reply, ReadError):
        return profile.function, f"FC{profile.function:02d} answered with data"
    if reply.kind != "exception":
        return reply
    if reply.exception_code == 1 and profile.alt_function is not None:
        alt = await line.read(unit, profile.alt_function, address, count)
        if not isinstance(alt, ReadError) or (alt.answered and alt.exception_code != 1):
            how = "with data" if not isinstance(alt, ReadError) else f"with {alt.short}"
            return profile.alt_function, (
                f"FC{profile.function:02d} gave {exception_text(1)}; "
                f"FC{profile.alt_function:02d} answered {how}"
            )
    return profile.function, f"FC{profile.function:02d} gave {reply.short}"


async def _pick_option(
    line: ModbusLine,
    unit: int,
    profile: Profile,
    function: int,
    option: str,
    display_kwh: float | None,
) -> OptionPick:
    opt = profile.option(option)
    good: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for choice in opt.choices:
        resolved = profile.resolve(function, {option: choice})
        names = {q.name for q in opt.choices[choice]}
        values: dict[str, float] = {}
        bad = ""
        for q in resolved.quantities:
            if q.name not in names:
                continue
            reply = await _read_quantity(line, unit, q)
            if isinstance(reply, ReadError):
                bad = (
                    reply.message
                    if not reply.answered
                    else exception_text(reply.exception_code or 0)
                )
                break
            decoded = _decode_one(resolved, q, reply)
            if isinstance(decoded, str):
                bad = decoded
                break
            problem = probe_problem(profile.kind, q.name, decoded)
            if problem is not None:
                bad = f"{q.name}: {problem}"
                break
            values[q.name] = decoded
        if bad:
            notes.append(f"{choice}: rejected ({bad})")
        else:
            good[choice] = values
            shown = ", ".join(f"{k}={v:g}" for k, v in sorted(values.items()))
            notes.append(f"{choice}: plausible ({shown})")
    evidence = "; ".join(notes)
    if len(good) == 1:
        return OptionPick(option, next(iter(good)), True, evidence)
    if good and display_kwh is not None:

        def distance(choice: str) -> float:
            v = good[choice].get("energy_import_kwh")
            return abs(v - display_kwh) if v is not None else float("inf")

        best = min(good, key=distance)
        if distance(best) != float("inf"):
            return OptionPick(
                option,
                best,
                True,
                f"{evidence}; closest to the display reading {display_kwh:g} kWh",
            )
    if not good:
        return OptionPick(option, opt.default, False, f"{evidence}; no choice is plausible")
    return OptionPick(
        option,
        opt.default if opt.default in good else next(iter(good)),
        False,
        f"{evidence}; several choices are plausible: enter the display reading "
        "(--display-kwh) or compare with the meter's LCD",
    )


def _decode_one(base: ResolvedProfile, q: Quantity, registers: list[int]) -> float | str:
    """Decode one quantity read on its own."""
    if q.exponent is not None:
        return "has a decimal-point register: options may not change such quantities"
    single = ResolvedProfile(base.profile, base.function, base.options, (q,), ())
    out = plan_reads(single).decode([registers])
    if q.name in out.rejected:
        return out.rejected[q.name]
    return out.values[q.name]


async def fit_profile(
    line: ModbusLine, unit: int, profile: Profile, display_kwh: float | None = None
) -> ProfileFit | ReadError:
    """Probe one profile on one unit: function code, options, then a full plausible read."""
    chosen = await _choose_function(line, unit, profile)
    if isinstance(chosen, ReadError):
        return chosen
    function, fc_evidence = chosen
    picks = []
    for opt in profile.options:
        picks.append(await _pick_option(line, unit, profile, function, opt.name, display_kwh))
    options = {p.option: p.choice for p in picks}
    resolved = profile.resolve(function, options)
    plan = plan_reads(resolved)
    results: list[list[int] | str] = []
    for block in plan.blocks:
        reply = await line.read(unit, block.function, block.address, block.count)
        if isinstance(reply, ReadError):
            if not reply.answered:
                return reply
            results.append(reply.short)
        else:
            results.append(reply)
    decoded = plan.decode(results)
    problems = dict(decoded.rejected)
    values = {}
    for name, value in decoded.values.items():
        problem = probe_problem(profile.kind, name, value)
        if problem is None:
            values[name] = value
        else:
            problems[name] = problem
    return ProfileFit(
        profile.name,
        function,
        options,
        tuple(picks),
        len(values),
        len(resolved.quantities),
        values,
        problems,
        fc_evidence,
    )


async def identify(
    line: ModbusLine,
    unit: int,
    profiles: Mapping[str, Profile] | Iterable[Profile],
    display_kwh: float | None = None,
) -> list[ProfileFit]:
    """Every profile that reads at least one plausible value, best first."""
    items = profiles.values() if isinstance(profiles, Mapping) else profiles
    fits = []
    for prof in items:
        fit = await fit_profile(line, unit, prof, display_kwh)
        if isinstance(fit, ProfileFit) and fit.plausible:
            fits.append(fit)
    fits.sort(key=lambda f: (-f.score, -f.plausible, f.profile))
    return fits
