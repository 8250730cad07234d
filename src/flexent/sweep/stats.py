"""Statistics over seeds: t-intervals of a mean, a difference and a ratio of means.

Pure Python (no SciPy): the two-sided 95 % Student-t quantiles are tabulated for the small
seed counts sweeps use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# t_{0.975, df} for df = 1..30 (two-sided 95 %); df > 30 uses the normal 1.96.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@dataclass(frozen=True)
class Interval:
    """A point estimate with a 95 % interval (``lo``/``hi`` are NaN when undefined)."""

    value: float
    lo: float
    hi: float
    n: int

    def fmt(self, digits: int = 3, scale: float = 1.0) -> str:
        """``0.412 [0.380, 0.444]``; one value: ``0.412 (n=1)``; none: empty."""
        if self.n == 0 or math.isnan(self.value):
            return ""
        v = f"{self.value * scale:.{digits}f}"
        if math.isnan(self.lo):
            return f"{v} (n={self.n})"
        return f"{v} [{self.lo * scale:.{digits}f}, {self.hi * scale:.{digits}f}]"

    def excludes(self, x: float) -> bool:
        return not math.isnan(self.lo) and (self.hi < x or self.lo > x)


def t_quantile(df: int) -> float:
    """The two-sided 95 % Student-t quantile with ``df`` degrees of freedom.

    >>> t_quantile(2), t_quantile(100)
    (4.303, 1.96)
    """
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_interval(values: Sequence[float]) -> Interval:
    """Mean and 95 % t-interval over independent values (seeds); one value: no interval.

    >>> mean_interval([1.0, 2.0, 3.0]).fmt(2)   # mean 2, s = 1, 4.303 / sqrt(3) = 2.484
    '2.00 [-0.48, 4.48]'
    """
    xs = [v for v in values if not math.isnan(v)]
    n = len(xs)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = sum(xs) / n
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def ratio_interval(num: Sequence[float], den: Sequence[float]) -> Interval:
    """``mean(num) / mean(den)`` with a 95 % Welch t-interval on the log ratio (delta method):
    ``exp(log r +- t_df * sqrt(u_a + u_b))`` with ``u = s^2 / (n mean^2)`` each side's squared
    relative standard error and Welch-Satterthwaite ``df``. With 3 seeds a percentile bootstrap
    has only 10 distinct resamples per arm and its interval is far too narrow; this one widens
    with the t quantile. Fewer than 2 values on either side, or a mean <= 0: no interval.

    >>> ratio_interval([2.0, 2.0], [1.0, 1.0]).fmt(2)
    '2.00 [2.00, 2.00]'
    >>> ratio_interval([2.0, 4.0], [1.0, 1.0]).fmt(2)  # u_a = 1 / 9, df 1, t 12.706
    '3.00 [0.04, 207.25]'
    """
    a = [v for v in num if not math.isnan(v)]
    b = [v for v in den if not math.isnan(v)]
    if not a or not b or sum(b) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    value = ma / mb
    n = min(len(a), len(b))
    if len(a) < 2 or len(b) < 2 or ma <= 0 or mb <= 0:
        return Interval(value, math.nan, math.nan, n)
    ua = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a) / ma**2
    ub = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b) / mb**2
    half = _welch_half_width(ua, ub, len(a), len(b))
    return Interval(value, value * math.exp(-half), value * math.exp(half), n)


def diff_interval(a: Sequence[float], b: Sequence[float]) -> Interval:
    """``mean(a) - mean(b)`` with a 95 % Welch t-interval (Welch-Satterthwaite df).

    >>> diff_interval([3.0, 4.0, 5.0], [1.0, 2.0, 3.0]).fmt(2)
    '2.00 [-0.27, 4.27]'
    """
    xa = [v for v in a if not math.isnan(v)]
    xb = [v for v in b if not math.isnan(v)]
    if not xa or not xb:
        return Interval(math.nan, math.nan, math.nan, 0)
    ma, mb = sum(xa) / len(xa), sum(xb) / len(xb)
    n = min(len(xa), len(xb))
    if len(xa) < 2 or len(xb) < 2:
        return Interval(ma - mb, math.nan, math.nan, n)
    va = sum((x - ma) ** 2 for x in xa) / (len(xa) - 1) / len(xa)
    vb = sum((x - mb) ** 2 for x in xb) / (len(xb) - 1) / len(xb)
    half = _welch_half_width(va, vb, len(xa), len(xb))
    return Interval(ma - mb, ma - mb - half, ma - mb + half, n)


def _welch_half_width(va: float, vb: float, na: int, nb: int) -> float:
    """``t_df * sqrt(va + vb)`` for two squared standard errors ``va``, ``vb`` of samples of
    sizes ``na``, ``nb`` (>= 2), with Welch-Satterthwaite ``df``; 0 when both are 0."""
    if va + vb == 0:
        return 0.0
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    return t_quantile(max(1, int(df))) * math.sqrt(va + vb)
