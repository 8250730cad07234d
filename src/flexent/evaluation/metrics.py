"""Sampling metrics: pass@k (unbiased estimator), mean@k and maj@k.

All functions here are pure Python on counts and answers; nothing imports torch.

pass@k follows Chen et al. (2021), "Evaluating Large Language Models Trained on Code": with
``n`` samples of which ``c`` are correct, the probability that a random size-``k`` subset of
the ``n`` samples contains at least one correct one is

    pass@k = 1 - C(n - c, k) / C(n, k).

The binomials overflow floats for large ``n``; the ratio is computed as the product

    C(n - c, k) / C(n, k) = prod_{i = n - c + 1}^{n} (1 - k / i)

(expand both binomials and cancel the common factorials), which stays in [0, 1].
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate for one problem with ``n`` samples, ``c`` of them correct.

    >>> round(pass_at_k(5, 2, 1), 12)  # = c / n
    0.4
    >>> pass_at_k(5, 0, 3), pass_at_k(5, 5, 3)
    (0.0, 1.0)
    """
    if n < 1:
        raise ValueError(f"pass_at_k: n must be >= 1 samples, got n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: correct count c must be in [0, n={n}], got c={c}")
    if not 1 <= k <= n:
        raise ValueError(
            f"pass_at_k: k must be in [1, n={n}] (cannot estimate pass@{k} from {n} samples "
            f"per problem; draw at least k samples), got k={k}"
        )
    if n - c < k:
        # Every size-k subset contains a correct sample.
        return 1.0
    ratio = 1.0
    for i in range(n - c + 1, n + 1):
        ratio *= 1.0 - k / i
    return 1.0 - ratio


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Average of :func:`pass_at_k` over problems given as ``(n, c)`` pairs."""
    if not counts:
        raise ValueError("mean_pass_at_k: no problems given (counts is empty)")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def mean_at_k(counts: Sequence[tuple[int, int]]) -> float:
    """mean@k: the average per-sample accuracy, ``mean(c / n)`` over problems.

    >>> mean_at_k([(4, 1), (4, 3)])
    0.5
    """
    if not counts:
        raise ValueError("mean_at_k: no problems given (counts is empty)")
    for n, c in counts:
        if n < 1 or not 0 <= c <= n:
            raise ValueError(f"mean_at_k: need n >= 1 and 0 <= c <= n, got (n={n}, c={c})")
    return sum(c / n for n, c in counts) / len(counts)


def default_ks(samples: int) -> list[int]:
    """Powers of two up to ``samples``, plus ``samples`` itself: 1, 2, 4, ..., K.

    >>> default_ks(1), default_ks(8), default_ks(12)
    ([1], [1, 2, 4, 8], [1, 2, 4, 8, 12])
    """
    if samples < 1:
        raise ValueError(f"default_ks: samples must be >= 1, got {samples}")
    ks = []
    k = 1
    while k <= samples:
        ks.append(k)
        k *= 2
    if ks[-1] != samples:
        ks.append(samples)
    return ks


@dataclass
class MajorityVote:
    """Outcome of a majority vote over one problem's samples.

    ``answer`` is the winning extracted answer (None when no sample had one), ``votes`` how
    many samples gave it, ``correct`` whether the samples with that answer were judged correct.
    """

    answer: Hashable | None
    votes: int
    correct: bool


def majority_vote(answers: Sequence[Hashable | None], correct: Sequence[bool]) -> MajorityVote:
    """Majority vote over extracted final answers of one problem's samples.

    Samples without an extracted answer (``None``) do not vote. Ties go to the answer seen
    first. The vote is correct when the first sample carrying the winning answer was judged
    correct (samples with the same extracted answer get the same verdict from a
    deterministic reward).

    >>> majority_vote(["4", "5", "4", None], [True, False, True, False])
    MajorityVote(answer='4', votes=2, correct=True)
    >>> majority_vote([None, None], [False, False])
    MajorityVote(answer=None, votes=0, correct=False)
    """
    if len(answers) != len(correct):
        raise ValueError(
            f"majority_vote: {len(answers)} answers but {len(correct)} correctness flags"
        )
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return MajorityVote(answer=None, votes=0, correct=False)
    # Counter.most_common keeps first-insertion order among equal counts.
    winner, votes = counts.most_common(1)[0]
    first = answers.index(winner)
    return MajorityVote(answer=winner, votes=votes, correct=bool(correct[first]))


def maj_at_k(votes: Sequence[MajorityVote]) -> float:
    """maj@k: the fraction of problems whose majority answer is correct."""
    if not votes:
        raise ValueError("maj_at_k: no problems given (votes is empty)")
    return sum(v.correct for v in votes) / len(votes)


def bootstrap_interval(
    values: Sequence[float], *, draws: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (problems resampled with
    replacement, ``draws`` times, from a fixed RNG: reproducible).

    >>> bootstrap_interval([1.0, 1.0, 1.0])
    (1.0, 1.0)
    >>> lo, hi = bootstrap_interval([0.0, 1.0] * 50)
    >>> 0.38 < lo < 0.5 < hi < 0.62
    True
    """
    import random

    if not values:
        raise ValueError("bootstrap_interval: no values")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(draws))
    tail = (1.0 - level) / 2
    return means[int(tail * (draws - 1))], means[round((1 - tail) * (draws - 1))]
