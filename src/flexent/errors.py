"""How commands end and speak: user errors, interruptions, one-line warnings.

Commands catch :class:`UserError` and print its message as one line (``flexent train: ...``),
exit with status 2 and leave nothing half-written; anything else is a bug and keeps its
traceback. Each subclass's message names the problem and where (file:line, the config key,
the command-line flag). :class:`Interrupted` is a stop by SIGINT / SIGTERM (exit 130 / 143);
:func:`one_line_warnings` prints flexent's own warnings as ``flexent CMD: warning: ...``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import warnings
from collections.abc import Iterator


class UserError(ValueError):
    """A problem the user can fix; the message names it and where."""


def json_error(file: object, err: json.JSONDecodeError, *, line: int | None = None) -> str:
    """``FILE:LINE: invalid JSON (MSG at column C)`` for a JSON parse error: ``line`` is the
    file's line when ``err`` comes from parsing that one line (a JSON Lines file), else the
    error's own line. Parse a line without its newline, or an error at its end is reported
    at column 1 of the next line.

    >>> import json
    >>> try:
    ...     json.loads('{"a": 1 "b": 2}')
    ... except json.JSONDecodeError as err:
    ...     print(json_error("m.jsonl", err, line=7))
    m.jsonl:7: invalid JSON (Expecting ',' delimiter at column 9)
    """
    where = err.lineno if line is None else line
    return f"{file}:{where}: invalid JSON ({err.msg} at column {err.colno})"


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM stopped a command; it exits with :attr:`exit_code`, the
    shell's 128 + signal number (130, 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        """``SIGINT``, ``SIGTERM``."""
        return signal.Signals(self.signum).name


@contextlib.contextmanager
def one_line_warnings(prog: str) -> Iterator[None]:
    """Within the block, flexent's own warnings (a ``UserWarning`` attributed to a flexent
    module: long prompts, a torn metrics line) print as one line, ``PROG: warning: ...``,
    instead of Python's two lines with the source path; other warnings keep their format."""
    previous = warnings.showwarning
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, UserWarning) and os.path.abspath(filename).startswith(package):
            text = " ".join(str(message).split())
            print(f"{prog}: warning: {text}", file=file or sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous
