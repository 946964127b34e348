"""The characters that text from outside may not carry into what a person reads.

Commit titles, job names, Kubernetes reasons, lock reasons and people's names come from anyone
who can push a commit, name a pod or type a command. Some of their characters make a message
read differently from what it says: control characters (NUL, ESC, …) cut or garble it in some
clients and terminals; bidi controls (U+202E turns "txt.exe" into what reads as "exe.txt") and
other invisible format characters (zero-width spaces, tag characters) reorder or hide text.

``scrub`` removes them, and is the one definition of "what is removed" for every output, Slack
(``adapters/slack/blocks/common.plain``) and GitLab Markdown (the MR description) alike; each
output then escapes its own markup.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["scrub"]

_LINE_BREAK: Final = re.compile("\r\n?|[\n\x85\u2028\u2029]")
_SPACES: Final = frozenset("\t\v\f")
_ZWJ: Final = "\u200d"
_EMOJI_MODIFIERS: Final = frozenset(["\ufe0f", *map(chr, range(0x1F3FB, 0x1F400))])
"""What may stand between an emoji and the joiner that follows it: the emoji presentation
selector, the skin tones."""
_BLANK_LETTERS: Final = frozenset("\u115f\u1160\u3164\uffa0")
"""Hangul fillers: letters that show as nothing, the usual way to fake a blank name."""


def scrub(text: str, *, newlines: bool = False) -> str:
    """``text`` without control characters, bidi controls and invisible format characters.

    Tabs and the other blank controls become a space, so words do not run together. Line breaks
    (``\\r\\n``, ``\\r``, U+2028…) become ``\\n`` where ``newlines`` allows them, a space where
    not. Removed: every other control character (C0, DEL, C1), every format character (Cf: the
    bidi controls U+202A to U+202E, U+2066 to U+2069, U+200E, U+200F, U+061C; zero-width spaces and
    joiners, the BOM, soft hyphens, tag characters), lone surrogates, and the Hangul fillers.

    One format character stays where it is harmless and needed: a zero-width joiner between two
    emoji, which makes one picture of them (the :technologist: "woman, laptop" sequence). There it
    joins two symbols into one, so it can neither reorder nor hide letters.
    """
    if text.isprintable() and _BLANK_LETTERS.isdisjoint(text):
        return text  # the common case: nothing to remove
    text = _LINE_BREAK.sub("\n" if newlines else " ", text)
    kept: list[str] = []
    for index, char in enumerate(text):
        if char == "\n" or char in _SPACES:
            kept.append(" " if char in _SPACES else char)
            continue
        category = unicodedata.category(char)
        if category in ("Cc", "Cs") or char in _BLANK_LETTERS:
            continue
        if category == "Cf" and not (char == _ZWJ and _joins_emoji(kept, text, index)):
            continue
        kept.append(char)
    return "".join(kept)


def _joins_emoji(before: list[str], text: str, index: int) -> bool:
    """The joiner at ``text[index]`` stands between two emoji (symbols, ``So``)."""
    after = text[index + 1 : index + 2]
    if not after or unicodedata.category(after) != "So":
        return False
    position = len(before) - 1
    while position >= 0 and before[position] in _EMOJI_MODIFIERS:
        position -= 1
    return position >= 0 and unicodedata.category(before[position]) == "So"
