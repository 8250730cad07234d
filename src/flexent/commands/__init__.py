"""Subcommands of the ``flexent`` CLI, one module each (see ``flexent.cli.COMMANDS``)."""
