"""Answer extraction from model output: ``\\boxed{}``, ``<answer>`` tags, last number.

Pure string scanning (no regex backtracking on nested input), linear in the text length.
"""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?|-?\.\d+")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces included.

    Also accepts the brace-less form ``\\boxed 5``. An unclosed last box is skipped in favour
    of the previous complete one; ``None`` when there is no complete box.

    >>> last_boxed(r"first \\boxed{1}, then \\boxed{\\frac{3}{4}}")
    '\\\\frac{3}{4}'
    >>> last_boxed(r"\\boxed{x} and \\boxed{\\frac{1}{")
    'x'
    >>> last_boxed("no box") is None
    True
    """
    found: str | None = None
    pos = 0
    while True:
        starts = [(i, c) for c in _BOX_COMMANDS if (i := text.find(c, pos)) >= 0]
        if not starts:
            return found
        start, cmd = min(starts)
        content, end = _box_content(text, start + len(cmd))
        if content is not None:
            found = content
        pos = max(end, start + len(cmd))


def _box_content(text: str, i: int) -> tuple[str | None, int]:
    """Parse the argument of a box command starting at ``text[i]``; (content, end index)."""
    if i < len(text) and text[i] == " ":  # "\boxed 5": the argument runs to the next space / $
        m = re.match(r" +([^\s$]+)", text[i:])
        return (m.group(1), i + m.end()) if m else (None, i)
    if i >= len(text) or text[i] != "{":
        return None, i
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
    return None, i + 1


def answer_tag(text: str) -> str | None:
    """Content of the last ``<answer>...</answer>`` pair, stripped.

    >>> answer_tag("<think>hm</think><answer> (1 + 2) * 3 </answer>")
    '(1 + 2) * 3'
    """
    matches = _ANSWER_TAG.findall(text)
    return matches[-1].strip() if matches else None


def last_number(text: str) -> str | None:
    """The last number in ``text`` (sign, thousands commas and decimals kept).

    >>> last_number("so 12 apples cost $1,234.50.")
    '1,234.50'
    """
    matches = _NUMBER.findall(text)
    return matches[-1] if matches else None


def strip_thousands(s: str) -> str:
    """``'1,234'`` -> ``'1234'``; anything that is not a comma-grouped number is unchanged.

    >>> strip_thousands("1,234"), strip_thousands("(1,2)")
    ('1234', '(1,2)')
    """
    s = s.strip()
    return s.replace(",", "") if _THOUSANDS.fullmatch(s) else s


def normalize_gold(text: str) -> str:
    """A gold answer as a bare final answer.

    GSM8K solutions ``'... #### 1,234'`` give ``'1234'``; MATH solutions give their last
    ``\\boxed{}``; anything else is stripped.

    >>> normalize_gold("She pays 3 * 4 = 12.\\n#### 1,234")
    '1234'
    >>> normalize_gold(r"so the answer is $\\boxed{\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    """
    if "####" in text:
        return strip_thousands(text.rsplit("####", 1)[1])
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    return text.strip()
