"""Helpers of the verl plugin tests (tests/test_verl_*.py): configs and batches."""

from __future__ import annotations

import torch

FLEXENT_TARGET = "flexent.integrations.verl.FlexentPolicyLossConfig"


def actor_config(v, policy_loss=None, **kw):
    from flexent.integrations.verl import FlexentPolicyLossConfig

    kw.setdefault("clip_ratio_low", 0.2)
    kw.setdefault("clip_ratio_high", 0.28)
    return v.ActorConfig(
        strategy="fsdp",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=1,
        policy_loss=policy_loss or FlexentPolicyLossConfig(loss_mode="flexent_ppo_clip"),
        **kw,
    )


def batch(seed: int, B: int = 4, T: int = 7):
    """old/new log-probs with ratios well outside [0.8, 1.28], mixed-sign advantages, padding."""
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3.0
    new = (old + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.5).clamp(max=0.0)
    adv = torch.randn(B, 1, generator=g, dtype=torch.float64).expand(B, T).clone()
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return old, new, adv, mask
