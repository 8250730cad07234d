"""The eval and report commands are cheap to import: `flexent --help` loads no heavy library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def test_cli_help_imports_no_heavy_modules():
    code = (
        "import sys; from flexent.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'matplotlib', 'vllm', 'tqdm', "
        "'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "[]"
