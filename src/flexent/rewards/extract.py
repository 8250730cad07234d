"""Answer extraction from model output: ``\\boxed{}``, ``<answer>`` tags, last number.

Every extractor is linear in the text length (model output can be megabytes of hostile text):
plain ``str.find`` scans, one brace-matching pass, and only regexes that cannot backtrack
super-linearly.
"""

from __future__ import annotations

import re

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)")
_BRACES = re.compile(r"[{}]")
_BARE_BOX_ARG = re.compile(r" +([^\s$]+)")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?|-?\.\d+")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_OPEN_TAG, _CLOSE_TAG = "<answer>", "</answer>"


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces included.

    Also accepts the brace-less form ``\\boxed 5`` (up to the next whitespace or ``$``). An
    unclosed last box is skipped in favour of the previous complete one; ``None`` when there
    is no complete box.

    Box commands are read in order of position; a complete box is kept and reading resumes
    after its closing brace (so boxes nested inside it are not separate answers); an unclosed
    box is ignored and reading resumes right after its ``{``. Linear time: one regex pass for
    the commands, one brace-matching pass with a stack, one pass over the commands.

    >>> last_boxed(r"first \\boxed{1}, then \\boxed{\\frac{3}{4}}")
    '\\\\frac{3}{4}'
    >>> last_boxed(r"\\boxed{x} and \\boxed{\\frac{1}{")
    'x'
    >>> last_boxed("no box") is None
    True
    """
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    commands = [(m.start(), m.end()) for m in _BOX_COMMAND.finditer(text)]
    n = len(text)
    opens = [arg for _, arg in commands if arg < n and text[arg] == "{"]
    closing = _matching_braces(text, opens)
    found: str | None = None
    pos = 0
    for start, arg in commands:
        if start < pos:  # inside the previous complete box
            continue
        content: str | None = None
        end = arg
        if arg < n and text[arg] == " ":
            m = _BARE_BOX_ARG.match(text, arg)
            if m:
                content, end = m.group(1), m.end()
        elif arg < n and text[arg] == "{":
            close = closing.get(arg)
            if close is None:
                end = arg + 1  # unclosed: resume right after its brace
            else:
                content, end = text[arg + 1 : close], close + 1
        if content is not None:
            found = content
        pos = end
    return found


def _matching_braces(text: str, opens: list[int]) -> dict[int, int]:
    """``{open: close}`` for the ``{`` at each position in ``opens`` that is closed.

    The ``}`` closing the ``{`` at ``i`` is the first one after ``i`` where the brace depth
    counted from ``i`` returns to 0, which is the ``}`` that pops it in one left-to-right stack
    pass (braces before the first wanted ``{`` cannot affect it, so the pass starts there).
    """
    if not opens:
        return {}
    wanted = set(opens)
    closing: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACES.finditer(text, opens[0]):
        j = m.start()
        if text[j] == "{":
            stack.append(j)
        elif stack:
            i = stack.pop()
            if i in wanted:
                closing[i] = j
    return closing


def answer_tag(text: str) -> str | None:
    """Content of the last ``<answer>...</answer>`` pair, stripped.

    Pairs like the regex ``<answer>(.*?)</answer>`` (non-greedy, left to right): a pair opens at
    the first ``<answer>`` at or after the end of the previous pair and closes at the first
    ``</answer>`` after it, so ``<answer>a<answer>b</answer>`` gives ``'a<answer>b'``. Linear
    time (the regex is quadratic on many unclosed tags).

    >>> answer_tag("<think>hm</think><answer> (1 + 2) * 3 </answer>")
    '(1 + 2) * 3'
    """
    found: str | None = None
    pos = 0
    while (start := text.find(_OPEN_TAG, pos)) >= 0:
        close = text.find(_CLOSE_TAG, start + len(_OPEN_TAG))
        if close < 0:  # no later <answer> can be closed either
            break
        found = text[start + len(_OPEN_TAG) : close]
        pos = close + len(_CLOSE_TAG)
    return None if found is None else found.strip()


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


def answer_line(text: str) -> str | None:
    r"""The text after the last ``Answer:`` (any case, spaces allowed before the colon) on its
    line, stripped of surrounding ``$`` and a final period: DAPO's prompt format, read as verl's
    ``math_dapo`` reads it. One backward scan, linear in the text.

    >>> answer_line("so x = 3.\nAnswer: $34$.")
    '34'
    >>> answer_line("answer : 7 apples\nthen more text"), answer_line("no tag") is None
    ('7 apples', True)
    """
    low = text.lower()
    end = len(text)
    while True:
        i = low.rfind("answer", 0, end)
        if i < 0:
            return None
        j = i + len("answer")
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == ":":
            line_end = text.find("\n", j)
            value = text[j + 1 : line_end if line_end >= 0 else len(text)].strip()
            value = value.rstrip(".").strip().strip("$").strip()
            return value or None
        end = i
