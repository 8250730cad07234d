"""Subcommands of the ``flexent`` CLI, one module each (see ``flexent.cli.COMMANDS``).

Each is cheap to import: heavy libraries are imported inside ``run``.
"""
