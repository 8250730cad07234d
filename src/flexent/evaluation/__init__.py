"""Evaluation: sampling metrics (pass@k, mean@k, maj@k), generation backends, benchmark runs.

``flexent.evaluation.metrics`` is pure Python; the generation backends import transformers or
vLLM inside their methods, so importing this package is cheap. See docs/evaluation.md.
"""

from flexent.evaluation.generation import (
    SamplingConfig,
    TransformersGenerator,
    VLLMGenerator,
    render_prompt,
)
from flexent.evaluation.metrics import (
    MajorityVote,
    default_ks,
    maj_at_k,
    majority_vote,
    mean_at_k,
    mean_pass_at_k,
    pass_at_k,
)
from flexent.evaluation.results import (
    ProblemResult,
    build_results,
    load_results,
    results_table,
    score_problem,
    write_results,
)
from flexent.evaluation.runner import Benchmark, reward_for, run_benchmark

__all__ = [
    "Benchmark",
    "MajorityVote",
    "ProblemResult",
    "SamplingConfig",
    "TransformersGenerator",
    "VLLMGenerator",
    "build_results",
    "default_ks",
    "load_results",
    "maj_at_k",
    "majority_vote",
    "mean_at_k",
    "mean_pass_at_k",
    "pass_at_k",
    "render_prompt",
    "results_table",
    "reward_for",
    "run_benchmark",
    "score_problem",
    "write_results",
]
