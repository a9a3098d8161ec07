"""What the spec says about Idempotency-Key on one route (generated into resources.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["off", "optional", "required"]
Outcome = Literal["success", "client_error", "server_error"]
StoreKind = Literal["database", "redis"]


@dataclass(frozen=True, slots=True)
class IdempotencyPolicy:
    mode: Mode = "optional"
    retention: float = 86400.0  # seconds a key and its response are kept
    lease: float = 60.0  # seconds a running request holds its key if it never finishes
    wait: float = 5.0  # seconds a duplicate waits for the first before a 409
    outcomes: frozenset[Outcome] = frozenset({"success", "client_error"})
    store: StoreKind = "database"

    def stores(self, status: int) -> bool:
        """Whether a response with this status is kept for replays."""
        return outcome_of(status) in self.outcomes


def outcome_of(status: int) -> Outcome:
    if status >= 500:
        return "server_error"
    return "client_error" if status >= 400 else "success"
