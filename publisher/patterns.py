"""Which regular expressions may run over imported articles: Python's `re` backtracks, so a
repeat of something that itself repeats or has alternatives (`(a+)+$`, `(\\w+\\s?)*x`, `(a|aa)*b`)
can take exponential time on a crafted article. `[[tag_rules]]` refuses those at config load; a
possessive repeat (`a*+`) or an atomic group (`(?>…)`) never backtracks and is allowed.
"""

from __future__ import annotations

import re
from re import _parser  # type: ignore[attr-defined]
from typing import Any

_REPEATS = frozenset({_parser.MAX_REPEAT, _parser.MIN_REPEAT})
_SAFE = frozenset({_parser.POSSESSIVE_REPEAT, _parser.ATOMIC_GROUP})


def _children(op: Any, value: Any) -> list[Any]:
    """The sub-patterns inside one parsed node."""
    if op in _REPEATS:
        return [value[2]]
    if op == _parser.SUBPATTERN:
        return [value[3]]
    if op == _parser.BRANCH:
        return list(value[1])
    if op in (_parser.ASSERT, _parser.ASSERT_NOT):
        return [value[1]]
    if op == _parser.GROUPREF_EXISTS:
        return [part for part in value[1:] if part is not None]
    return []


def _backtracks(pattern: Any) -> bool:
    """Whether `pattern` holds a repeat (of more than one) or alternatives that may backtrack."""
    for op, value in pattern:
        if op in _SAFE:
            continue
        if (op in _REPEATS and value[1] > 1) or op == _parser.BRANCH:
            return True
        if any(_backtracks(child) for child in _children(op, value)):
            return True
    return False


def nested_repeat(pattern: str) -> bool:
    """Whether `pattern` repeats something that repeats or has alternatives (catastrophic
    backtracking); `pattern` must compile."""
    return _nested(_parser.parse(pattern, re.IGNORECASE))


def _nested(pattern: Any) -> bool:
    for op, value in pattern:
        if op in _SAFE:
            continue
        if op in _REPEATS and value[1] > 1 and _backtracks(value[2]):
            return True
        if any(_nested(child) for child in _children(op, value)):
            return True
    return False
