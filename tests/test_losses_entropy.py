"""Entropy-gated rules: Archer's entropy-dependent clip band and the high-entropy-minority mask,
by hand, against TRL's own mask, and through both adapters."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from flexent.losses import archer, compute_policy_loss, high_entropy_mask, sequence_quantile_mask


def test_sequence_quantile_by_hand():
    # row 0: entropies 1..5, 0.8 quantile (linear) = 1 + 0.8 * 4 = 4.2 -> only 5 is above
    # row 1: valid [0.5, 0.1] (the rest padding, NaN there), quantile 0.1 + 0.8 * 0.4 = 0.42
    h = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [0.5, 0.1, math.nan, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]).bool()
    assert sequence_quantile_mask(h, mask, 0.8).tolist() == [
        [False, False, False, False, True],
        [True, False, False, False, False],
    ]


def test_archer_widens_the_band_of_high_entropy_tokens_only():
    # 4 tokens, A = +1, r = 1.3 everywhere; entropies 0.1, 0.2, 0.3, 0.9: the sequence's 0.5
    # quantile is 0.25, so tokens 3 and 4 get eps 0.5 (1.3 inside 1.5: loss -1.3, gradient
    # kept), tokens 1 and 2 eps_high 0.2 (clipped: loss -1.2, no gradient)
    lp = torch.full((1, 4), math.log(1.3), requires_grad=True)
    out = archer(lp, torch.zeros(1, 4), torch.tensor([1.0]), torch.ones(1, 4),
                 entropy=torch.tensor([[0.1, 0.2, 0.3, 0.9]]), quantile=0.5)  # fmt: skip
    assert out.per_token_loss[0].tolist() == pytest.approx([-1.2, -1.2, -1.3, -1.3])
    out.per_token_loss.sum().backward()
    assert lp.grad[0].tolist() == pytest.approx([0.0, 0.0, -1.3, -1.3])
    assert float(out.metrics["archer/frac_high_entropy"]) == 0.5
    # dual clip: A = -1 and r = 4 > clip_c = 3: the loss is capped at -A * 3 = 3
    lp4 = torch.full((1, 2), math.log(4.0))
    capped = archer(lp4, torch.zeros(1, 2), torch.tensor([-1.0]), torch.ones(1, 2),
                    entropy=torch.tensor([[0.1, 0.2]]))  # fmt: skip
    assert capped.per_token_loss[0].tolist() == pytest.approx([3.0, 3.0])
    with pytest.raises(ValueError, match="archer needs entropy="):
        archer(lp4, torch.zeros(1, 2), torch.tensor([-1.0]), torch.ones(1, 2))


def test_compute_policy_loss_hands_the_entropy_to_archer_and_the_bonus():
    lp = torch.full((1, 4), math.log(1.3))
    h = torch.tensor([[0.1, 0.2, 0.3, 0.9]])
    loss, _ = compute_policy_loss("archer", lp, torch.zeros(1, 4), torch.tensor([1.0]),
                                  torch.ones(1, 4), entropy=h, entropy_coef=0.1,
                                  quantile=0.5)  # fmt: skip
    # token-mean of [-1.2, -1.2, -1.3, -1.3] minus 0.1 * mean entropy 0.375
    assert float(loss) == pytest.approx(-1.25 - 0.0375)


def test_high_entropy_mask_equals_trls():
    pytest.importorskip("trl")
    from trl import GRPOTrainer

    identity = SimpleNamespace(pad_across_processes=lambda t, **_: t, gather=lambda t: t)
    fake = SimpleNamespace(accelerator=identity)
    g = torch.Generator().manual_seed(0)
    for top in (0.2, 0.5, 1.0):
        h = torch.rand(4, 9, generator=g)
        mask = torch.rand(4, 9, generator=g) > 0.3
        want = GRPOTrainer.get_high_entropy_mask(fake, h, mask.long(), 1 - top)
        assert torch.equal(high_entropy_mask(h, mask, top), want), top
