"""Fault windows the control endpoint arms (pure: callers pass the monotonic time).

Connection-level faults (drop, stall, flood) act on live connections and live in the
server; this holds the ones that are a state of the whole simulator.
"""

from __future__ import annotations

# A realistic subscribe failure: Bybit's generic "error:<reason>,topic:<topic>" form.
DEFAULT_REJECT = "error:service is busy, please try again later"


class Faults:
    """Refuse and reject windows, and the topics whose next delta skips one ``u``."""

    def __init__(self) -> None:
        self.refuse_until = 0.0
        self.reject_until = 0.0
        self.reject_msg = DEFAULT_REJECT
        self.gaps: set[str] = set()
        self.stall_until = 0.0  # informational: the server enforces stalls

    def refuse(self, seconds: float, now: float) -> None:
        self.refuse_until = now + seconds

    def refusing(self, now: float) -> bool:
        return now < self.refuse_until

    def reject(self, seconds: float, now: float, message: str = "") -> None:
        self.reject_until = now + seconds
        self.reject_msg = message or DEFAULT_REJECT

    def rejection(self, now: float) -> str:
        """The ret_msg to fail a subscribe with, or "" when subscribes are accepted."""
        return self.reject_msg if now < self.reject_until else ""

    def gap(self, topic: str) -> None:
        self.gaps.add(topic)

    def take_gap(self, topic: str) -> bool:
        """True once for a topic armed with :meth:`gap`."""
        if topic in self.gaps:
            self.gaps.discard(topic)
            return True
        return False

    def active(self, now: float) -> dict[str, object]:
        """What is armed right now, for ``/sim/stats``."""
        out: dict[str, object] = {}
        if now < self.refuse_until:
            out["refuse"] = round(self.refuse_until - now, 3)
        if now < self.reject_until:
            out["reject"] = round(self.reject_until - now, 3)
        if now < self.stall_until:
            out["stall"] = round(self.stall_until - now, 3)
        if self.gaps:
            out["gap"] = sorted(self.gaps)
        return out
