"""One prompt row from one source record: field lookup (dotted paths), chat messages, wrapping.

``build_row(record, fields, fmt)`` raises :class:`DataError` with what is wrong; the caller
prefixes the file and line/row. The rules (documented in docs/tasks.md):

* A field is a column name or a dotted path through nested objects
  (``reward_model.ground_truth``); a key that itself contains dots is matched first.
* The prompt is a non-empty string or a list of chat messages ``{"role", "content"}`` (verl's
  layout). Roles are ``system``, ``user``, ``assistant``; ``content`` is a string; at least one
  user message has text. Only ``role`` and ``content`` are kept.
* Wrapping (:func:`format_prompt`): ``instruction`` goes after the problem text (the string
  prompt, or the last user message), or is the whole template when it contains ``{problem}``;
  ``system_prompt`` becomes the system message (replacing a row's own) or, as text, a paragraph
  before the prompt. ``chat=False`` renders messages as text: the system message, then the
  user messages, separated by blank lines; an assistant message is then an error (a multi-turn
  prompt needs ``chat=True``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flexent.data.sources import DataError
from flexent.rewards.extract import normalize_gold

PROMPT_FIELDS = ("prompt", "question", "problem", "query", "input")
# reward_model.ground_truth: verl's parquet layout (DAPO-Math-17k, verl's GSM8K/MATH
# preprocessing); before `solution`, which is often a worked solution rather than the gold.
ANSWER_FIELDS = ("answer", "final_answer", "reward_model.ground_truth", "solution", "ground_truth")
ROLES = ("system", "user", "assistant")

Messages = list[dict[str, str]]
Prompt = str | Messages
Formatter = Callable[[Prompt], Prompt]


class _PathError(Exception):
    """A dotted path does not resolve; the message says where it stops."""


def get_path(record: Mapping[str, Any], path: str) -> Any:
    """The value at ``path``: a key of ``record`` (dots included), else a dotted path through
    nested objects. Raises :class:`_PathError` naming where the path stops.

    >>> get_path({"reward_model": {"ground_truth": "34"}}, "reward_model.ground_truth")
    '34'
    """
    if path in record:
        return record[path]
    parts = path.split(".")
    node: Any = record
    for i, part in enumerate(parts):
        here = "row" if i == 0 else repr(".".join(parts[:i]))
        if not isinstance(node, Mapping):
            raise _PathError(f"{here} is a {type(node).__name__}, not an object")
        if part not in node:
            raise _PathError(f"{here} has no {part!r} (it has {sorted(map(str, node))})")
        node = node[part]
    return node


def has_path(record: Mapping[str, Any], path: str) -> bool:
    try:
        get_path(record, path)
    except _PathError:
        return False
    return True


def find_field(
    record: Mapping[str, Any], explicit: str | None, candidates: Sequence[str], what: str
) -> str:
    """The field (path) to read: ``explicit``, else the first of ``candidates`` present."""
    if explicit is not None:
        try:
            get_path(record, explicit)
        except _PathError as e:
            if "." in explicit and explicit not in record:
                raise DataError(f"missing {what} field {explicit!r}: {e}") from None
            raise DataError(
                f"missing {what} field {explicit!r} (row has {sorted(map(str, record))})"
            ) from None
        return explicit
    for path in candidates:
        if has_path(record, path):
            return path
    raise DataError(
        f"no {what} field: expected one of {list(candidates)}, row has {sorted(map(str, record))}"
    )


def check_prompt(value: Any, key: str) -> Prompt:
    """A non-empty string, or a validated copy of a chat message list."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"field {key!r} must be a non-empty string, got {value!r:.80}")
        return value
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return check_messages(value, key)
    raise DataError(
        f"field {key!r} must be a non-empty string or a list of chat messages "
        f"({{role, content}}), got {type(value).__name__}"
    )


def check_messages(value: Sequence[Any], key: str) -> Messages:
    """``[{"role": ..., "content": ...}, ...]`` with known roles, string contents and a user
    message with text; returns plain dicts of ``role`` and ``content`` only."""
    if not value:
        raise DataError(f"field {key!r} is an empty message list")
    messages: Messages = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping):
            raise DataError(
                f"field {key!r}: message {i} is a {type(m).__name__}, not a {{role, content}} object"
            )
        for part in ("role", "content"):
            if part not in m:
                raise DataError(f"field {key!r}: message {i} has no {part!r} (it has {sorted(m)})")
        role, content = m["role"], m["content"]
        if role not in ROLES:
            raise DataError(f"field {key!r}: message {i} has role {role!r}; roles: {list(ROLES)}")
        if not isinstance(content, str):
            raise DataError(
                f"field {key!r}: message {i} content must be a string, got {type(content).__name__}"
            )
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "user" and m["content"].strip() for m in messages):
        raise DataError(f"field {key!r}: no user message with text")
    return messages


def problem_text(prompt: Prompt) -> str:
    """The problem a prompt states: the string, or the user messages' contents joined by a
    blank line."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(m["content"] for m in prompt if m["role"] == "user")


def _instruct(text: str, instruction: str | None) -> str:
    if not instruction:
        return text
    if "{problem}" in instruction:
        return instruction.replace("{problem}", text)
    return f"{text}\n{instruction}"


def format_prompt(
    prompt: Prompt, *, instruction: str | None, system_prompt: str | None, chat: bool
) -> Prompt:
    """Apply ``instruction`` / ``system_prompt`` and render as messages (``chat``) or text."""
    if isinstance(prompt, str):
        text = _instruct(prompt, instruction)
        if chat:
            head = [{"role": "system", "content": system_prompt}] if system_prompt else []
            return [*head, {"role": "user", "content": text}]
        return f"{system_prompt}\n\n{text}" if system_prompt else text
    messages = [dict(m) for m in prompt]
    if chat:
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[last_user]["content"] = _instruct(messages[last_user]["content"], instruction)
        if system_prompt:
            if messages[0]["role"] == "system":
                messages[0]["content"] = system_prompt
            else:
                messages.insert(0, {"role": "system", "content": system_prompt})
        return messages
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            raise DataError(
                f"message {i} is an assistant turn: a multi-turn prompt needs chat=True "
                "(data.chat: true); as plain text only system and user messages are kept"
            )
    system = system_prompt or "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    text = _instruct(problem_text(messages), instruction)
    return f"{system}\n\n{text}" if system else text


def build_row(
    record: Mapping[str, Any] | Exception,
    fields: tuple[str | None, str | None],
    fmt: Formatter,
) -> dict[str, Any]:
    """``{"prompt", "answer", "problem", [solution], **other columns}`` of one record."""
    if isinstance(record, Exception):
        raise DataError(str(record))
    if not isinstance(record, Mapping):
        raise DataError(f"row is a {type(record).__name__}, not an object")
    pkey = find_field(record, fields[0], PROMPT_FIELDS, "prompt")
    akey = find_field(record, fields[1], ANSWER_FIELDS, "answer")
    prompt = check_prompt(get_path(record, pkey), pkey)
    raw = get_path(record, akey)
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise DataError(f"field {akey!r} must be a string or number, got {type(raw).__name__}")
    answer = normalize_gold(str(raw))
    if not answer:
        raise DataError(f"field {akey!r} is empty")
    # A top-level field is replaced by prompt / answer; a nested one stays in its column.
    row = {k: v for k, v in record.items() if k not in (pkey, akey)}
    row.setdefault("problem", problem_text(prompt))
    if answer != str(raw).strip():
        row.setdefault("solution", raw)  # keep the worked solution the gold came from
    try:
        row["prompt"] = fmt(prompt)
    except DataError as e:
        raise DataError(f"field {pkey!r}: {e}") from None
    row["answer"] = answer
    return row
