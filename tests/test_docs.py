"""The docs stay true to the code: cross-references resolve, every loss metric key is listed."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from flexent.losses import compute_policy_loss, list_policy_losses, user_param_names
from loss_support import supplied_params

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
    out = {}
    for name in list_policy_losses():
        extra = supplied_params(name, old)
        entropy = extra.pop("entropy", None)  # compute_policy_loss hands it to the loss
        if "clip_c" in user_param_names(name):
            extra["clip_c"] = 3.0  # the dual clip adds its key
        _, metrics = compute_policy_loss(
            name, new, old, adv, mask, eps_low=0.2, eps_high=0.28, entropy=entropy, **extra
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


def _section(title: str) -> str:
    text = (DOCS / "metrics.md").read_text()
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def test_metrics_doc_lists_every_control_key_exactly():
    """docs/metrics.md's strategy section lists exactly the control/* keys the strategies emit."""
    from flexent.strategies import get_strategy, list_strategies

    emitted: set[str] = set()
    strategies = [get_strategy(name, total_steps=10) for name in list_strategies()]
    strategies.append(get_strategy("target", total_steps=10, actuator="cascade", bonus_max=0.01))
    for strategy in strategies:
        for step, entropy in enumerate([1.0, 0.9, 0.1, 0.05, 2.0]):
            strategy.weights(step, entropy=entropy)
            emitted |= set(strategy.metrics())
    from flexent.strategies.adaptive import AdaptiveEntropyCoef  # the adaptive bonus controller

    emitted |= set(AdaptiveEntropyCoef().metrics())
    assert _table_keys(_section("## Strategy control")) == emitted


def test_metrics_doc_lists_every_region_key_exactly():
    """The region table documents region/E1/<suffix> for exactly the suffixes region_stats
    returns, and region_stats returns them for E1-E4 under both prefixes."""
    from flexent.diagnostics import SCHEMES, region_stats

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, generator=g)
    old = torch.log_softmax(logits, -1)[..., 0]
    entropy = torch.distributions.Categorical(logits=logits).entropy()
    keys = set(
        region_stats(old + 0.1, old, torch.tensor([1.0, -1.0]), torch.ones(2, 4), entropy=entropy,
                     eps_low=0.2, eps_high=0.2, schemes=tuple(SCHEMES), old_logits=logits)
    )  # fmt: skip
    suffixes = {k.split("/", 2)[2] for k in _table_keys_any(_section("## Entropy regions"))}
    want = {f"{p}/E{i}/{s}" for p in SCHEMES.values() for i in range(1, 5) for s in suffixes}
    assert keys == want


def _table_keys_any(section: str) -> set[str]:
    """Backticked first-column keys with any number of slashes."""
    return set(re.findall(r"^\| `([a-z_]+(?:/[A-Za-z_0-9]+)+)` \|", section, flags=re.MULTILINE))
