"""Evaluation: sampling metrics (pass@k, mean@k, maj@k), generation backends, benchmark runs.

``flexent.evaluation.metrics`` is pure Python; the generation backends import transformers or
vLLM lazily, so importing this package is cheap.
"""

from flexent.evaluation.metrics import (
    MajorityVote,
    default_ks,
    maj_at_k,
    majority_vote,
    mean_at_k,
    mean_pass_at_k,
    pass_at_k,
)

__all__ = [
    "MajorityVote",
    "default_ks",
    "maj_at_k",
    "majority_vote",
    "mean_at_k",
    "mean_pass_at_k",
    "pass_at_k",
]
