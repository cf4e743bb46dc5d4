"""The time budget of a run (`train.max_minutes`)."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)



class Budget:
    """Wall-clock budget (`train.max_minutes`); also tells the schedule how far along time is.

    `over()` and `fraction()` read the time agreed at the last `refresh()`, never a live clock: under DDP
    `agree` takes the maximum over ranks, and every rank refreshes at the same step (`check()` every
    `every` calls, and at each epoch's end), so all ranks stop at the same step with the same learning
    rate. (Each rank's own clock would stop one rank a step before the others: a hang.)
    """

    def __init__(self, minutes: float, already_spent: float = 0.0, agree=None, every: int = 1):
        self.seconds = minutes * 60.0
        self.start = time.monotonic() - already_spent
        self.agree, self.every, self.calls = agree or (lambda x: x), max(1, every), 0
        self.agreed = already_spent

    @property
    def spent(self) -> float:
        """Seconds on this process's clock (for logs); decisions use `agreed`."""
        return time.monotonic() - self.start

    def refresh(self) -> float:
        """Agree on the time spent; every rank must call this at the same point."""
        self.agreed = float(self.agree(self.spent))
        return self.agreed

    def check(self) -> bool:
        """`over()` after a refresh every `every` calls: the per-step stop test of the training loop."""
        self.calls += 1
        if self.seconds > 0 and self.calls % self.every == 0:
            self.refresh()
        return self.over()

    def over(self) -> bool:
        return self.seconds > 0 and self.agreed >= self.seconds

    def fraction(self) -> float:
        return min(1.0, self.agreed / self.seconds) if self.seconds > 0 else 0.0
