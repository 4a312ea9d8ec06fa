"""``normalise_text`` is the regular expression its docstring gives, on any text: the fast paths
(ASCII already in normal form, ASCII to split) change nothing a prompt hash depends on."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from finetune.datasets._prompt import normalise_text

_SPACES = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f \x85\xa0\u2003\u3000"
"""White space that ``str.split`` and the expression both split at, ASCII first."""


def _definition(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("ab .,\u00e9e\u0301") + [chr(c) for c in range(0x20)] + ["\x7f"]),
        st.sampled_from(list(_SPACES)),
        st.characters(),
    ),
    max_size=40,
)


_ascii = st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=12)


@settings(max_examples=500, derandomize=True)
@given(_text)
def test_normalise_text_is_its_definition_on_any_text(text: str) -> None:
    assert normalise_text(text) == _definition(text)


@settings(max_examples=500, derandomize=True)
@given(_ascii)
def test_normalise_text_is_its_definition_on_ascii(text: str) -> None:
    assert normalise_text(text) == _definition(text)


def test_ascii_already_normal_comes_back_as_the_same_object_and_the_rest_is_rewritten() -> None:
    text = "What is the capital of France? Answer in one word."
    assert normalise_text(text) is text
    assert normalise_text("a\tb") == "a b"
    assert normalise_text("a\x1fb") == "a b"  # a separator that both split at
    assert normalise_text("a\x7fb") == "a\x7fb"  # unprintable, not white space: kept
    assert normalise_text(" a  b ") == "a b"
    assert normalise_text("a ") == normalise_text(" a") == "a"
    assert normalise_text("") == ""
    assert normalise_text("e\u0301 ") == "\u00e9"
