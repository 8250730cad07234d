"""The user-error base class: a mistake in a config, a data file, a spec, a path or a flag.

Commands catch :class:`UserError` and print its message as one line (``flexent train: ...``),
exit with status 2 and leave nothing half-written; anything else is a bug and keeps its
traceback. Each subclass's message names the problem and where (file:line, the config key,
the command-line flag).
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem the user can fix; the message names it and where."""
