"""The Gmail clip guard: Gmail clips an HTML part above 102 KB, hiding the footer (and its
unsubscribe link). The guard keeps a digest's HTML part under `HTML_BUDGET` bytes *as sent*
(quoted-printable, CRLF: about 8 % more than the decoded HTML) by shortening teasers, then by
moving articles to the overflow list, and says what it did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from publisher.message import qp_size

# Keep room below 102 KB for the filled-in links and addresses.
HTML_BUDGET = 96 * 1024
TEASER_LEVELS: tuple[int | None, ...] = (None, 600, 300, 0)  # characters; None = the whole teaser


@dataclass(frozen=True)
class Layout:
    """How much of the digest the clip guard lets through."""

    teaser_limit: int | None = None
    keep: int | None = None  # how many articles stay in full; the rest join the overflow


def fits(page: str) -> bool:
    """Whether the HTML part, encoded as it is sent, stays under the budget."""
    return qp_size(page) <= HTML_BUDGET


def fit(attempt: Callable[[Layout], str], titles: Sequence[str]) -> tuple[Layout, str, list[str]]:
    """The fullest layout whose HTML (`attempt(layout)`) fits the budget: shorter teasers first,
    then fewer of the articles (`titles`, in order) in full; returns it, its page and notes."""
    for limit in TEASER_LEVELS:
        page = attempt(Layout(teaser_limit=limit))
        if fits(page):
            note = [] if limit is None else [f"teasers shortened to {limit} characters" if limit else "teasers removed"]
            return Layout(teaser_limit=limit), page, note
    low, high = 0, len(titles)  # find the most articles that fit, without teasers
    best = Layout(teaser_limit=0, keep=0)
    while low <= high:
        middle = (low + high) // 2
        if fits(attempt(Layout(teaser_limit=0, keep=middle))):
            best, low = Layout(teaser_limit=0, keep=middle), middle + 1
        else:
            high = middle - 1
    moved = list(titles[best.keep or 0 :])
    return (
        best,
        attempt(best),
        ["teasers removed", f"moved {len(moved)} articles to the overflow list: " + "; ".join(moved)],
    )
