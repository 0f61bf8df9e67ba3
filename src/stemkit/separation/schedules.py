"""Remix schedules for progressive inference: how much of the previous estimate each step trusts.

Progressive inference separates ``y_n = (1 − β_n)·y + β_n·x̂_{n−1}`` at step ``n`` (see
:mod:`stemkit.separation.progressive`). Step 1 always has ``β_1 = 0`` — it is ordinary separation —
and the later steps follow a schedule on ``t = (n − 1) / N ∈ [0, 1)``, so β never reaches 1 (at
β = 1 the input would be the estimate alone and the mixture would be forgotten):

- ``linear``: ``β = t`` (the seed's ``β_n = n / N``, shifted so step 1 is plain separation);
- ``cosine``: ``β = sin²(π t / 2)`` — slow start, slow finish;
- ``karras[:ρ]``: the EDM noise schedule (Karras et al. 2022, eq. 5) applied to the gain left on
  the mixture, ``σ = 1 − β``, which plays the role of the noise level: ``σ_n = (σ_max^{1/ρ} +
  (n−1)/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`` with ``σ_max = 1`` and ``σ_min = 1/N``, so it ends
  where ``linear`` ends; ρ = 1 is ``linear``, larger ρ trusts the estimate sooner (default 7, EDM's);
- ``constant[:C]``: ``β = C`` after step 1 (default 0.5);
- a comma-separated list of N numbers (the first must be 0): a custom schedule;
- ``adaptive``: chosen per step from the estimates themselves (:class:`AdaptiveSchedule`).
"""

from __future__ import annotations

import math

from stemkit.errors import StemkitError

SCHEDULES = ("linear", "cosine", "karras", "constant", "adaptive")


def parse_schedule(spec: str) -> tuple[str, float | None, list[float] | None]:
    """``"karras:7"`` → ``("karras", 7.0, None)``; ``"0,0.5,0.8"`` → ``("custom", None, [0, .5, .8])``."""
    spec = spec.strip()
    if "," in spec or _is_number(spec):
        try:
            values = [float(v) for v in spec.split(",") if v.strip()]
        except ValueError:
            raise StemkitError(f"bad custom schedule {spec!r}: give comma-separated numbers like 0,0.4,0.7") from None
        if not values or values[0] != 0.0 or any(not 0.0 <= v < 1.0 for v in values):
            raise StemkitError(f"a custom schedule starts at 0 and stays in [0, 1): got {spec!r}")
        return "custom", None, values
    name, _, arg = spec.partition(":")
    if name not in SCHEDULES:
        raise StemkitError(f"unknown schedule {spec!r}: use {', '.join(SCHEDULES)}, karras:RHO, constant:C or a list like 0,0.5")
    parameter = None
    if arg:
        if name not in ("karras", "constant"):
            raise StemkitError(f"schedule {name!r} takes no parameter (got {spec!r})")
        try:
            parameter = float(arg)
        except ValueError:
            raise StemkitError(f"bad parameter in schedule {spec!r}") from None
        if name == "karras" and parameter <= 0:
            raise StemkitError(f"karras ρ must be positive, got {parameter}")
        if name == "constant" and not 0.0 <= parameter < 1.0:
            raise StemkitError(f"constant β must be in [0, 1), got {parameter}")
    return name, parameter, None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def beta_schedule(spec: str, steps: int) -> list[float]:
    """β for steps 1..N of a fixed schedule (``adaptive`` has none: it is decided while running)."""
    if steps < 1:
        raise StemkitError(f"steps must be at least 1, got {steps}")
    name, parameter, values = parse_schedule(spec)
    if name == "custom":
        if len(values) != steps:
            raise StemkitError(f"the custom schedule has {len(values)} values but --steps is {steps}")
        return values
    if name == "adaptive":
        raise StemkitError("the adaptive schedule is chosen while separating; it has no fixed values")
    times = [(n - 1) / steps for n in range(1, steps + 1)]
    if name == "linear":
        return times
    if name == "cosine":
        return [math.sin(math.pi * t / 2) ** 2 for t in times]
    if name == "karras":
        if steps == 1:
            return [0.0]
        rho = 7.0 if parameter is None else parameter
        floor = (1.0 / steps) ** (1.0 / rho)
        return [1.0 - (1.0 + (n / (steps - 1)) * (floor - 1.0)) ** rho for n in range(steps)]
    constant = 0.5 if parameter is None else parameter
    return [0.0] + [constant] * (steps - 1)


#: Most progressive steps accepted: each step is a full separation, and past this the cost is a mistake.
MAX_STEPS = 64


def check_schedule(spec: str, steps: int) -> None:
    """Validate ``--schedule`` with ``--steps`` up front, whatever the step count (even one pass)."""
    if not 1 <= steps <= MAX_STEPS:
        raise StemkitError(f"--steps must be between 1 and {MAX_STEPS}, got {steps}")
    if parse_schedule(spec)[0] != "adaptive":
        beta_schedule(spec, steps)
