"""Name suggestions: the one "did you mean" of every error about a name that matches nothing."""

from __future__ import annotations

import difflib
from typing import Iterable


def close_names(name: str, known: Iterable[str], *, n: int = 3) -> list[str]:
    """Up to ``n`` names of ``known`` closest to ``name`` (difflib's ratio, cutoff 0.6)."""
    return difflib.get_close_matches(name, list(known), n=n)


def did_you_mean(name: str, known: Iterable[str], *, what: str = "names") -> str:
    """A hint for an unknown ``name``: the closest known names, or the list of them when none is close."""
    known = list(known)
    close = close_names(name, known)
    if close:
        return f"did you mean {', '.join(close)}?"
    shown = ", ".join(known[:20]) + (f", ... ({len(known)} in all)" if len(known) > 20 else "")
    return f"{what} are: {shown or '(none)'}"


__all__ = ["close_names", "did_you_mean"]
