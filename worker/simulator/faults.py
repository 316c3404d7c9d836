"""Faults on demand: random rates, latency, and per-number scripts of exact steps.

What each step does to the message decides what a client may conclude, so it is explicit:

- a result code (``1008``, ``60008``, ``1007``, any other): answered instead of processing; nothing
  is delivered or billed.
- ``{"http": 502}``: that HTTP status with a non-JSON body; nothing delivered.
- ``"drop"``: the connection is cut before processing; nothing delivered (a safe retry).
- ``"drop_after"``: processed and delivered, then the connection is cut (the ambiguous case).
- ``{"slow": 30}``: processed and delivered, then the answer is held back 30 seconds, longer than
  a client's read timeout (the other ambiguous case).
- ``"ok"``: processed normally; useful between two faults.
"""

from __future__ import annotations

import random
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class StepKind(StrEnum):
    OK = "ok"
    RESULT = "result"
    HTTP = "http"
    DROP = "drop"
    DROP_AFTER = "drop_after"
    SLOW = "slow"


# Steps that stop the request before the simulator looks at its content.
BEFORE_PROCESSING = frozenset({StepKind.HTTP, StepKind.DROP})
# Steps that concern one number of a group, not the whole request.
PER_NUMBER = frozenset({StepKind.OK, StepKind.RESULT})
# Steps applied to the answer of a request that was processed (and maybe delivered).
AFTER_PROCESSING = frozenset({StepKind.DROP_AFTER, StepKind.SLOW})


MAX_RESULT_CODE = 999_999


class StepError(ValueError):
    """A scripted step or a fault setting that cannot be understood."""


def _quoted(raw: object) -> str:
    """``raw`` for a message: short, and safe whatever its size or depth (it comes from the
    network through the control API)."""
    return reprlib.repr(raw)


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    value: float = 0  # the result code, the HTTP status, or the delay in seconds

    @property
    def label(self) -> str:
        if self.kind is StepKind.RESULT:
            return str(int(self.value))
        if self.kind is StepKind.HTTP:
            return f"http_{int(self.value)}"
        if self.kind is StepKind.SLOW:
            return f"slow {self.value:g}s"
        return self.kind.value

    def to_json(self) -> object:
        if self.kind is StepKind.RESULT:
            return int(self.value)
        if self.kind is StepKind.HTTP:
            return {"http": int(self.value)}
        if self.kind is StepKind.SLOW:
            return {"slow": self.value}
        return str(self.kind)


def parse_step(raw: object) -> Step:
    """A step as JSON or TOML gives it: ``1008``, ``"drop"``, ``{"http": 503}``, ``{"slow": 5}``"""
    if isinstance(raw, bool):
        raise StepError(f"not a step: {raw!r}")
    if isinstance(raw, int) and 0 <= raw <= MAX_RESULT_CODE:
        return Step(StepKind.OK) if raw == 0 else Step(StepKind.RESULT, raw)
    if isinstance(raw, str):
        if raw in (StepKind.OK, StepKind.DROP, StepKind.DROP_AFTER):
            return Step(StepKind(raw))
        raise StepError(f"unknown step {_quoted(raw)}; use a result code, ok, drop or drop_after")
    if isinstance(raw, Mapping) and len(raw) == 1:
        ((key, value),) = raw.items()
        number_ok = isinstance(value, int | float) and not isinstance(value, bool)
        if key == "http" and number_ok and isinstance(value, int) and 100 <= value <= 599:
            return Step(StepKind.HTTP, value)
        if key == "slow" and number_ok and 0 <= value <= 3600:
            return Step(StepKind.SLOW, float(value))
        if key == "result" and number_ok and isinstance(value, int):
            return parse_step(value)
    raise StepError(
        f"not a step: {_quoted(raw)}; e.g. 1008 (a result code from 1 to {MAX_RESULT_CODE}), "
        '"drop", {"http": 503}, {"slow": 5}'
    )


def parse_steps(raw: object) -> tuple[Step, ...]:
    if not isinstance(raw, list | tuple) or len(raw) > 10_000:
        raise StepError("steps must be a list of at most 10000 steps")
    return tuple(parse_step(item) for item in raw)


class FaultKind(StrEnum):
    """The faults drawn at random; the values are the keys of ``rates``."""

    OTHER_ERROR = "1007"
    ONWARD_TIMEOUT = "1008"
    PROCESSING_TIMEOUT = "60008"
    HTTP_502 = "http_502"
    HTTP_503 = "http_503"
    DROP = "drop"
    DROP_AFTER = "drop_after"
    SLOW = "slow"


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Random faults for send requests, plus a latency every answer waits before it goes out."""

    rates: Mapping[FaultKind, float] = field(default_factory=dict)
    slow_seconds: float = 30.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object]) -> FaultSettings:
        unknown = set(raw) - {"rates", "slow_seconds", "latency_ms", "jitter_ms"}
        if unknown:
            raise StepError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        rates_raw = raw.get("rates", {})
        if not isinstance(rates_raw, Mapping):
            raise StepError("rates must be a table of fault -> probability")
        rates: dict[FaultKind, float] = {}
        for key, value in rates_raw.items():
            try:
                kind = FaultKind(str(key))
            except ValueError:
                known = ", ".join(kind.value for kind in FaultKind)
                raise StepError(f"unknown fault {_quoted(key)}; known: {known}") from None
            rates[kind] = _number(value, f"rates.{key}", upper=1.0)
        if sum(rates.values()) > 1.0:
            raise StepError("fault rates add up to more than 1")
        return cls(
            rates=rates,
            slow_seconds=_number(raw.get("slow_seconds", 30.0), "slow_seconds", upper=3600),
            latency_ms=_number(raw.get("latency_ms", 0.0), "latency_ms", upper=600_000),
            jitter_ms=_number(raw.get("jitter_ms", 0.0), "jitter_ms", upper=600_000),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "rates": {kind.value: rate for kind, rate in self.rates.items()},
            "slow_seconds": self.slow_seconds,
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
        }

    def draw(self, rng: random.Random) -> Step | None:
        """The random fault for one request, or None to process it normally."""
        if not self.rates:
            return None
        point = rng.random()
        for kind, rate in self.rates.items():
            if point < rate:
                return self._step(kind)
            point -= rate
        return None

    def latency_seconds(self, rng: random.Random) -> float:
        if not self.latency_ms and not self.jitter_ms:
            return 0.0
        return (self.latency_ms + rng.uniform(0.0, self.jitter_ms)) / 1000.0

    def _step(self, kind: FaultKind) -> Step:
        if kind in (FaultKind.HTTP_502, FaultKind.HTTP_503):
            return Step(StepKind.HTTP, int(kind.value.removeprefix("http_")))
        if kind is FaultKind.DROP:
            return Step(StepKind.DROP)
        if kind is FaultKind.DROP_AFTER:
            return Step(StepKind.DROP_AFTER)
        if kind is FaultKind.SLOW:
            return Step(StepKind.SLOW, self.slow_seconds)
        return Step(StepKind.RESULT, int(kind.value))


def _number(value: object, name: str, *, upper: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= upper:
        raise StepError(f"{name} must be a number from 0 to {upper:g}")
    return float(value)
