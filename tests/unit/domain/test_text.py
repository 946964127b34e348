"""``scrub``: the characters removed from outside text before anyone reads it."""

from __future__ import annotations

import unicodedata

import pytest

from bot.domain.text import scrub

FAMILY = "\U0001f469\u200d\U0001f469\u200d\U0001f467"
TECHNOLOGIST = "\U0001f469\U0001f3fd\u200d\U0001f4bb"
RAINBOW_FLAG = "\U0001f3f3\ufe0f\u200d\U0001f308"


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("Fix checkout rounding", "Fix checkout rounding"),
        ("déjà vu · 中文 · ✨ feat: sparkles", "déjà vu · 中文 · ✨ feat: sparkles"),
        ("nbsp\u00a0and\u2003em space stay", "nbsp\u00a0and\u2003em space stay"),
        # C0, DEL and C1 controls
        ("before\x00after", "beforeafter"),
        ("\x1b[31mred\x1b[0m", "[31mred[0m"),
        ("bell\x07 del\x7f csi\x9b", "bell del csi"),
        # blank controls are spaces, so words do not run together
        ("tab\there\vand\fthere", "tab here and there"),
        # bidi controls
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("\u202a\u202b\u202c\u202d\u202e", ""),
        ("\u2066isolate\u2067d\u2068 \u2069", "isolated "),
        ("\u200eleft\u200fright\u061carabic", "leftrightarabic"),
        # other invisible format characters
        ("zero\u200bwidth\u200cnon\u2060joiner\ufeffbom\u00adshy", "zerowidthnonjoinerbomshy"),
        ("tags\U000e0041\U000e0042\U000e007f", "tags"),
        ("adm\u200din", "admin"),  # a joiner between letters hides a word
        ("\u200d\U0001f308", "\U0001f308"),  # a joiner with nothing before it
        # ... but inside an emoji sequence it makes one picture of two
        (FAMILY, FAMILY),
        (TECHNOLOGIST, TECHNOLOGIST),
        (RAINBOW_FLAG, RAINBOW_FLAG),
        # blank letters, lone surrogates
        ("\u3164\u115fname", "name"),
        ("half\ud800pair", "halfpair"),
        # line breaks, where a line is all there is
        (
            "one\ntwo\r\nthree\rfour\x85five\u2028six\u2029seven",
            "one two three four five six seven",
        ),
    ],
)
def test_scrub(text: str, clean: str) -> None:
    assert scrub(text) == clean


def test_line_breaks_are_kept_where_asked() -> None:
    assert scrub("one\ntwo\r\nthree\rfour\x85five\u2028six\x00", newlines=True) == (
        "one\ntwo\nthree\nfour\nfive\nsix"
    )


def test_nothing_hidden_survives_in_any_character() -> None:
    planes = [*range(0xD800), *range(0xE000, 0x32000), *range(0xE0000, 0xE1000)]
    every = "".join(map(chr, planes))
    kept = scrub(every, newlines=True)
    left = {unicodedata.category(ch) for ch in kept.replace("\n", "")}
    # no joiner stands between two emoji in this string: no format character at all
    assert not left & {"Cc", "Cf", "Cs", "Zl", "Zp"}
    assert kept.count("\n") == 5  # \n, \r (apart: \v and \f are between), NEL, U+2028, U+2029
