"""What one check of ``sms-worker doctor`` found: OK, FAIL with how to fix it, or SKIP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OK, FAIL, SKIP = "OK", "FAIL", "SKIP"


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: str  # OK, FAIL or SKIP (not run: what it needs failed)
    detail: str
    fix: str = ""
    bad_input: bool = False  # a configuration error: doctor exits 2 rather than 1

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, OK, detail)


def failed(name: str, detail: str, fix: str, *, bad_input: bool = False) -> CheckResult:
    return CheckResult(name, FAIL, detail, fix, bad_input)


def skipped(name: str, detail: str) -> CheckResult:
    return CheckResult(name, SKIP, detail)
