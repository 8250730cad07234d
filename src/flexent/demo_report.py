"""Old path of :mod:`flexent.demo.summary` (the demo's ``summary.md``), kept for imports that
name it; new code imports ``flexent.demo.summary``."""

from flexent.demo.summary import write_summary

__all__ = ["write_summary"]
