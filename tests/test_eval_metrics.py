"""pass@k, mean@k and maj@k against hand-computed values and brute-force enumeration."""

from __future__ import annotations

import itertools

import pytest

from flexent.evaluation.metrics import (
    MajorityVote,
    default_ks,
    maj_at_k,
    majority_vote,
    mean_at_k,
    mean_pass_at_k,
    pass_at_k,
)


# n = 5 samples, c = 2 correct, so n - c = 3 wrong. pass@k = 1 - C(3, k) / C(5, k):
#   k=1: C(3,1)/C(5,1) = 3/5  -> 1 - 3/5  = 2/5
#   k=2: C(3,2)/C(5,2) = 3/10 -> 1 - 3/10 = 7/10
#   k=3: C(3,3)/C(5,3) = 1/10 -> 1 - 1/10 = 9/10
#   k=4: C(3,4) = 0 (fewer than 4 wrong samples) -> 1
#   k=5: C(3,5) = 0 -> 1
@pytest.mark.parametrize(
    ("k", "expected"), [(1, 2 / 5), (2, 7 / 10), (3, 9 / 10), (4, 1.0), (5, 1.0)]
)
def test_pass_at_k_hand_computed(k, expected):
    assert pass_at_k(5, 2, k) == pytest.approx(expected, abs=1e-12)


def _brute_force(n: int, c: int, k: int) -> float:
    """Fraction of all size-k subsets of n samples (first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_subset_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute_force(n, c, k), abs=1e-12)


def test_pass_at_k_edge_cases():
    assert pass_at_k(7, 0, 1) == 0.0
    assert pass_at_k(7, 0, 7) == 0.0
    assert pass_at_k(7, 7, 1) == 1.0
    assert pass_at_k(1, 1, 1) == 1.0
    with pytest.raises(ValueError, match=r"k must be in \[1, n=5\].*got k=6"):
        pass_at_k(5, 2, 6)
    with pytest.raises(ValueError, match="got k=0"):
        pass_at_k(5, 2, 0)
    with pytest.raises(ValueError, match="got c=6"):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError, match="got n=0"):
        pass_at_k(0, 0, 1)


def test_pass_at_k_is_stable_for_large_n():
    # C(1000, 500) overflows a float; the product form does not. With one correct sample out
    # of n, pass@k = k / n exactly (a size-k subset contains that sample with probability k/n).
    assert pass_at_k(1000, 1, 500) == pytest.approx(0.5, abs=1e-12)
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001, abs=1e-15)
    # Monotone in k and in c.
    values = [pass_at_k(256, 3, k) for k in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
    assert values == sorted(values)
    assert pass_at_k(256, 4, 8) > pass_at_k(256, 3, 8)


def test_mean_pass_at_k_and_mean_at_k():
    counts = [(4, 0), (4, 1), (4, 4)]
    # pass@2 per problem: 0; 1 - C(3,2)/C(4,2) = 1 - 3/6 = 1/2; 1. Mean = 1.5 / 3 = 1/2.
    assert mean_pass_at_k(counts, 2) == pytest.approx(0.5)
    # mean@4 = (0/4 + 1/4 + 4/4) / 3 = 5/12; it equals pass@1.
    assert mean_at_k(counts) == pytest.approx(5 / 12)
    assert mean_pass_at_k(counts, 1) == pytest.approx(5 / 12)
    with pytest.raises(ValueError, match="empty"):
        mean_at_k([])
    with pytest.raises(ValueError, match=r"n=2, c=3"):
        mean_at_k([(2, 3)])


def test_default_ks():
    assert default_ks(1) == [1]
    assert default_ks(2) == [1, 2]
    assert default_ks(32) == [1, 2, 4, 8, 16, 32]
    assert default_ks(6) == [1, 2, 4, 6]
    with pytest.raises(ValueError):
        default_ks(0)


def test_majority_vote():
    # "7" has 3 votes vs 2 for "5"; its samples are correct.
    vote = majority_vote(["5", "7", "7", None, "5", "7"], [False, True, True, False, False, True])
    assert vote == MajorityVote(answer="7", votes=3, correct=True)
    # A wrong majority beats a correct minority.
    assert not majority_vote(["5", "5", "7"], [False, False, True]).correct
    # Tie 2-2: the answer seen first ("7") wins.
    assert majority_vote(["7", "5", "5", "7"], [True, False, False, True]).answer == "7"
    # Unextracted answers do not vote: one "3" beats three Nones.
    assert majority_vote([None, None, "3", None], [False] * 3 + [False]).votes == 1
    with pytest.raises(ValueError, match="3 answers but 2"):
        majority_vote(["1", "2", "3"], [True, False])


def test_maj_at_k():
    votes = [
        MajorityVote("1", 2, True),
        MajorityVote("2", 1, False),
        MajorityVote(None, 0, False),
        MajorityVote("4", 3, True),
    ]
    assert maj_at_k(votes) == 0.5
    with pytest.raises(ValueError):
        maj_at_k([])
