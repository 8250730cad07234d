"""CLI subcommand modules (see ``flexent.cli.COMMANDS``); each is cheap to import."""
