"""The docs stay true to the code: cross-references resolve, every loss metric key is listed."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from flexent.losses import compute_policy_loss, list_policy_losses

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _text_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    files += sorted((ROOT / "src" / "flexent").rglob("*.py"))
    return [f for f in files if f.exists()]


def test_doc_references_exist():
    missing = []
    for path in _text_files():
        for name in sorted(set(re.findall(r"docs/([A-Za-z0-9_\-]+\.md)", path.read_text()))):
            if not (DOCS / name).exists():
                missing.append(f"{path.relative_to(ROOT)} -> docs/{name}")
    assert missing == []


def _loss_metric_keys() -> dict[str, set[str]]:
    """Keys ``compute_policy_loss`` returns per registered loss on a small batch (the loss's
    own keys plus ``policy/loss``; ppo_clip with its dual clip on)."""
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(3, 5, generator=g) * 2
    new = old + torch.randn(3, 5, generator=g) * 0.3
    adv = torch.randn(3, 5, generator=g)
    mask = torch.ones(3, 5, dtype=torch.bool)
    extra = {"ppo_clip": {"clip_c": 3.0}, "clip_cov": {"generator": torch.Generator()}}
    out = {}
    for name in list_policy_losses():
        _, metrics = compute_policy_loss(
            name, new, old, adv, mask, eps_low=0.2, eps_high=0.28, **extra.get(name, {})
        )
        out[name] = set(metrics)
    return out


def _table_keys(section: str) -> set[str]:
    """Backticked keys in the first column of the markdown tables of ``section``."""
    return set(re.findall(r"^\| `([a-z_]+/[a-z_0-9]+)` \|", section, flags=re.MULTILINE))


def test_metrics_doc_lists_every_loss_key_exactly():
    """docs/metrics.md's loss section: the first table holds exactly the keys every loss returns,
    the "only some losses" table exactly the others."""
    text = (DOCS / "metrics.md").read_text()
    start = text.index("## Clipping and policy change")
    section = text[start : text.index("\n## ", start + 1)]
    split = section.find("Keys only some losses add")
    assert split > 0, "docs/metrics.md: no 'Keys only some losses add' table"
    per_loss = _loss_metric_keys()
    # policy/loss comes from compute_policy_loss, not the losses: listed with the "some" keys
    every = set.intersection(*per_loss.values()) - {"policy/loss"}
    assert _table_keys(section[:split]) == every
    assert _table_keys(section[split:]) == set.union(*per_loss.values()) - every
