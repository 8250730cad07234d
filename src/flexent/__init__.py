"""flexent: flexible entropy control for RLVR on language models.

The core (``flexent.thresholds``, ``flexent.losses``, ``flexent.strategies``,
``flexent.diagnostics``, ``flexent.control``) is pure torch; engine adapters live in
``flexent.integrations`` (``trl``, ``verl``) and import their engines lazily. Where the code
departs from the method as published, docs/losses.md ("Departures from the method") lists it.
"""

__version__ = "0.1.0"
