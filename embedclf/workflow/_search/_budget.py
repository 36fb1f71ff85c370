"""The search's clock: time spent, time left, and the cost of fitting heads.

Embedding costs come from the sources (measured images/s). Fitting costs are
measured too: each evaluated configuration records its seconds per *unit*
(training rows x features x classes x fits, the work of an L-BFGS softmax
fit), and the next configuration's cost is its units times the slowest rate
seen so far. The first configuration has no rate yet; it is the one the
search always runs.
"""

from __future__ import annotations

import time

__all__ = ["Budget", "FakeClock"]

#: Seconds kept for the final training's own steps besides fitting (predict,
#: report with thumbnails, model directory) when nothing measured them.
FINAL_OVERHEAD_S = 20.0


class FakeClock:
    """A clock that moves only when told (tests, benchmarks on arrays).

    Examples
    --------
    >>> clock = FakeClock()
    >>> clock.advance(2.5)
    >>> clock()
    2.5
    """

    def __init__(self, start: float = 0.0):
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += float(seconds)


class Budget:
    """Seconds allowed, the clock, and the measured fit rate.

    Parameters
    ----------
    seconds : float
        The whole budget, final training included.
    clock : callable returning seconds
    """

    def __init__(self, seconds: float, clock=time.perf_counter):
        self.seconds = float(seconds)
        self.clock = clock
        self.start = clock()
        self.fit_rate = None  # seconds per unit (rows * features * classes * fits)

    @property
    def spent(self) -> float:
        return self.clock() - self.start

    @property
    def left(self) -> float:
        return self.seconds - self.spent

    def fits(self, cost: float, reserve: float = 0.0) -> bool:
        """Whether ``cost`` seconds now and ``reserve`` later fit in what is left."""
        return cost + reserve <= self.left

    def fit_cost(self, units: float) -> float:
        """Estimated seconds of fits of ``units`` (0 before any measurement)."""
        return 0.0 if self.fit_rate is None else units * self.fit_rate

    def record_fit(self, units: float, seconds: float) -> None:
        """Keep the slowest seconds-per-unit seen (a cautious estimate)."""
        if units > 0 and seconds > 0:
            rate = seconds / units
            self.fit_rate = rate if self.fit_rate is None else max(self.fit_rate, rate)


def fit_units(n_rows: int, n_features: int, n_classes: int, n_fits: int) -> float:
    """The work of ``n_fits`` softmax fits, in the units of :class:`Budget`."""
    return float(n_rows) * n_features * n_classes * n_fits
