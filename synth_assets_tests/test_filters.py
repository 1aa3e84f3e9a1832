"""Tests for synth_assets.core.filters: one positive and one negative case per rule."""

from __future__ import annotations

import math

import pytest

from synth_assets.core.dedup import DUPLICATE_QUESTION
from synth_assets.core.filters import (
    ANSWER_TOO_LONG,
    ANSWER_TOO_SHORT,
    EMPTY,
    LANGUAGE_MISMATCH,
    LOW_INFORMATION,
    NOT_A_QUESTION,
    QUESTION_TOO_LONG,
    QUESTION_TOO_SHORT,
    REASON_DESCRIPTIONS,
    UNGROUNDED,
    FilterConfig,
    filter_pairs,
)
from synth_assets.core.text import grounding_score, is_question

CHUNK = (
    "Ducks eat food sources such as grasses, aquatic plants, fish, insects, small amphibians,"
    " worms, and small molluscs. Dabbling ducks feed on the surface of water or on land, or as"
    " deep as they can reach by up-ending without completely submerging. Along the edge of the"
    " bill, there is a comb-like structure called a pecten. This strains the water squirting"
    " from the side of the bill and traps any food."
)
QUESTION = "What do ducks eat?"
ANSWER = (
    "Ducks eat food sources such as grasses, aquatic plants, fish, insects, small amphibians,"
    " worms, and small molluscs."
)
LOREM = [
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Proin elit mi, fermentum vitae"
    " dolor facilisis, porttitor mollis quam.",
    # these three contain "in" and "at": their stopword share alone would pass 15%
    "Sed eros diam, gravida non varius at, scelerisque in libero.",
    "Sed facilisis leo at urna rhoncus, in facilisis arcu eleifend.",
    "In ullamcorper malesuada justo, vel scelerisque nisl lacinia at.",
    "Maecenas id neque pharetra, eleifend lectus a, vehicula sapien.",
    "At vero eos et accusam et justo duo dolores et ea rebum.",
    "Vestibulum tincidunt orci ac lorem consequat semper.",  # short ones too
]
ENGLISH = [
    "Diving ducks and sea ducks forage deep underwater.",
    "Multimedia Documents: Word processing has expanded beyond text.",
    "In general, ducks make a range of calls, including whistles, cooing, yodels and grunts.",
    "IBM MT/ST: Introduced in 1964, this machine combined IBM's Selectric typewriter with"
    " magnetic tape storage.",
    "Microsoft launched Word for MS-DOS in 1983, introducing a graphical user interface (GUI)"
    " and mouse support.",
    "The wings are very strong and are generally short and pointed, and the flight of ducks"
    " requires fast continuous strokes, requiring in turn strong wing muscles.",
    "Headquartered in Armonk, New York",  # too short to judge
    "Ducks eat grasses, insects and worms.",
]


def pair(question: str | None = QUESTION, answer: str | None = ANSWER, chunk: str | None = CHUNK) -> dict:
    return {"question": question, "answer": answer, "chunk_text": chunk}


def reasons(
    question: str | None = QUESTION,
    answer: str | None = ANSWER,
    chunk: str | None = CHUNK,
    config: FilterConfig = FilterConfig(),
) -> list[str]:
    return filter_pairs([{"question": question, "answer": answer, "chunk_text": chunk}], config)[0]


def test_a_good_pair_is_kept() -> None:
    assert reasons() == []


def test_empty() -> None:
    assert reasons(question="") == [EMPTY]  # not also question_too_short
    assert reasons(answer="   ") == [EMPTY]
    assert reasons(question=None, answer=None) == [EMPTY]
    assert reasons(question=math.nan) == [EMPTY]  # pandas' missing value
    assert EMPTY not in reasons()


def test_question_length() -> None:
    assert QUESTION_TOO_SHORT in reasons(question="Why?")
    assert QUESTION_TOO_LONG in reasons(question="Why " + "really " * 60 + "?")
    config = FilterConfig(min_question_chars=5, max_question_chars=20)
    assert reasons(question="Why not?", config=config) == []
    assert QUESTION_TOO_LONG in reasons(config=FilterConfig(max_question_chars=10))


def test_answer_length() -> None:
    assert ANSWER_TOO_SHORT in reasons(answer="Grass.")
    assert ANSWER_TOO_LONG in reasons(answer=ANSWER, config=FilterConfig(max_answer_chars=50))
    assert reasons(answer="Ducks eat grasses and fish.") == []


def test_not_a_question() -> None:
    assert NOT_A_QUESTION in reasons(question="Ducks eat many kinds of food.")
    assert reasons(question="Describe what ducks eat.") == []
    assert reasons(question="List the food sources of ducks") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What do ducks eat?", True),
        ('Is it called a "pecten?"', True),
        ("Explain the pecten.", True),
        ("summarise the feeding section", True),
        ("Give two examples of diving ducks.", True),
        ("Ducks eat grass.", False),
        ("Explaining ducks is hard.", False),
        ("", False),
    ],
)
def test_is_question(text: str, expected: bool) -> None:
    assert is_question(text) is expected


def test_duplicates_keep_the_first() -> None:
    pairs = [
        pair("What do ducks eat?"),
        pair("what do  ducks EAT ?"),
        pair("What is a pecten?", "A comb-like structure along the edge of the bill."),
        pair("What do ducks eat?!"),
    ]
    assert filter_pairs(pairs) == [[], [DUPLICATE_QUESTION], [], [DUPLICATE_QUESTION]]


def test_a_rejected_first_copy_does_not_block_a_good_later_one() -> None:
    pairs = [pair(answer="Bread, chips and popcorn from tourists."), pair(), pair()]
    assert filter_pairs(pairs) == [[UNGROUNDED], [], [DUPLICATE_QUESTION]]


@pytest.mark.parametrize("answer", LOREM)
def test_lorem_ipsum_is_low_information(answer: str) -> None:
    assert LOW_INFORMATION in reasons(answer=answer, chunk=answer)


@pytest.mark.parametrize("answer", ENGLISH)
def test_real_english_is_not_low_information(answer: str) -> None:
    assert reasons(answer=answer, chunk=answer) == []


def test_low_information_threshold_is_configurable() -> None:
    answer = ENGLISH[5]  # a long sentence: its stopword share is judged
    assert reasons(answer=answer, chunk=answer) == []
    strict = FilterConfig(min_stopword_ratio=0.5)
    assert LOW_INFORMATION in reasons(answer=answer, chunk=answer, config=strict)


def test_ungrounded() -> None:
    invented = "Ducks mainly eat bread, chips and popcorn given to them by tourists in city parks."
    assert UNGROUNDED in reasons(answer=invented)
    assert UNGROUNDED in reasons(chunk=None)  # a missing chunk grounds nothing
    assert reasons(answer="Dabbling ducks feed on the surface of the water or on the land.") == []


def test_grounding_score() -> None:
    assert grounding_score(ANSWER, CHUNK) == 1.0
    assert grounding_score("ducks eat bread", CHUNK) == pytest.approx(2 / 3)
    assert grounding_score("The duck feeds.", CHUNK) == 1.0  # inflections match
    assert grounding_score("Founded in 1911.", "It was founded in 1912.") == 0.5  # numbers count
    assert grounding_score("It is what it is.", CHUNK) == 1.0  # no content: nothing unsupported
    assert grounding_score("Ducks eat.", "") == 0.0


def test_all_reasons_are_listed() -> None:
    result = filter_pairs([pair("Lorem?", LOREM[0])] * 2, FilterConfig(max_answer_chars=50))
    # the chunk is English, the filler answer Latin
    assert set(result[0]) == {QUESTION_TOO_SHORT, ANSWER_TOO_LONG, LOW_INFORMATION, UNGROUNDED,
                              LANGUAGE_MISMATCH}
    assert set(result[1]) == set(result[0])  # the first copy was rejected: no duplicate
    assert set(reasons(question="Ducks", answer="Bread")) == {
        QUESTION_TOO_SHORT, NOT_A_QUESTION, ANSWER_TOO_SHORT, UNGROUNDED
    }


def test_results_are_aligned_with_the_input() -> None:
    assert filter_pairs([pair(), {"question": "", "answer": ""}]) == [[], [EMPTY]]
    assert filter_pairs([]) == []


def test_every_reason_has_a_description() -> None:
    codes = {EMPTY, QUESTION_TOO_SHORT, QUESTION_TOO_LONG, ANSWER_TOO_SHORT, ANSWER_TOO_LONG,
             NOT_A_QUESTION, DUPLICATE_QUESTION, LOW_INFORMATION, UNGROUNDED}
    assert codes <= set(REASON_DESCRIPTIONS)
    assert all(REASON_DESCRIPTIONS[code] for code in codes)


def test_default_config() -> None:
    config = FilterConfig()
    assert (config.min_question_chars, config.max_question_chars) == (10, 300)
    assert (config.min_answer_chars, config.max_answer_chars) == (20, 2000)
    assert (config.min_grounding, config.min_stopword_ratio) == (0.8, 0.15)
