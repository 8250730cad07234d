"""flexent: flexible entropy control for RLVR on language models.

The core (``flexent.thresholds``, ``flexent.losses``, ``flexent.strategies``,
``flexent.diagnostics``) is pure torch; engine adapters live in ``flexent.integrations``
and import their engines lazily.
"""

__version__ = "0.1.0"
