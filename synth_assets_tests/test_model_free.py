"""Tests for synth_assets.generation.model_free: sentence splitting, the question rules,
and the hard guarantee that every answer is verbatim chunk text."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from synth_assets.generation.model_free import (
    MODEL_FREE_TEMPLATE_VERSION,
    QUESTION_TYPES,
    QAPair,
    generate_pairs,
)
from synth_assets.generation.sentences import split_sentences

EXAMPLES = Path(__file__).parents[1] / "examples" / "documents"
PASSAGE_DEPENDENT = re.compile(r"\b(the passage|the text|the document|above|according to)\b", re.I)


def normalise(text: str) -> str:
    return " ".join(text.split()).lower()


def assert_well_formed(pairs: list[QAPair], chunk: str) -> None:
    """The properties the pipeline relies on, for every pair of one chunk."""
    evidence_seen: set[str] = set()
    for pair in pairs:
        assert normalise(pair.answer) in normalise(chunk), pair
        assert pair.evidence == pair.answer
        assert pair.question_type in QUESTION_TYPES
        assert not PASSAGE_DEPENDENT.search(pair.question), pair.question
        if pair.question_type == "explain":
            assert pair.question.split()[0] in {"Explain", "Describe"}, pair.question
            assert pair.question.endswith((".", "?")), pair.question
        else:
            assert pair.question.endswith("?"), pair.question
        assert pair.question[0].isupper()
        assert pair.question != pair.answer
        for sentence in split_sentences(pair.answer):
            assert sentence not in evidence_seen, "two pairs share an evidence sentence"
            evidence_seen.add(sentence)


def pieces(markdown: str, size: int = 3000) -> list[str]:
    """Paragraph-aligned pieces of about `size` characters."""
    out, current = [], ""
    for paragraph in markdown.split("\n\n"):
        if current and len(current) + len(paragraph) > size:
            out.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    return out + ([current] if current else [])


# --- sentence splitting ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Dr. Smith works at the U.S. Department of Energy. He earned 3.5 million dollars."
            " It was a record.",
            [
                "Dr. Smith works at the U.S. Department of Energy.",
                "He earned 3.5 million dollars.",
                "It was a record.",
            ],
        ),
        (
            "Some birds, e.g. ducks, swim well. Others, i.e. hens, do not!"
            " J. R. R. Tolkien wrote books.",
            [
                "Some birds, e.g. ducks, swim well.",
                "Others, i.e. hens, do not!",
                "J. R. R. Tolkien wrote books.",
            ],
        ),
        (
            "See Fig. 3 and Vol. 2 for details. Mr. and Mrs. Jones came at 5 p.m. yesterday."
            " Is it so? Yes.",
            [
                "See Fig. 3 and Vol. 2 for details.",
                "Mr. and Mrs. Jones came at 5 p.m. yesterday.",
                "Is it so?",
                "Yes.",
            ],
        ),
        (  # a line break inside a sentence is joined; a caption line stays apart
            "The origins of word\nprocessing go back to the typewriter.\nMallard landing\nDucks fly.",
            [
                "The origins of word processing go back to the typewriter.",
                "Mallard landing",
                "Ducks fly.",
            ],
        ),
        (  # citation markers stay out of both sentences
            'Ducks eat grass.[11] They eat fish. [ 5 ] [ 6 ] Geese do too. He said "Stop." Then he left.',
            ["Ducks eat grass.", "They eat fish.", "Geese do too.", 'He said "Stop."', "Then he left."],
        ),
        (  # headings, tables, comments skipped; list markers removed
            "# Title\n\nFirst sentence here. Second one!\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
            "<!-- image -->\n- A list item.\n1. Numbered item",
            ["First sentence here.", "Second one!", "A list item.", "Numbered item"],
        ),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_split_sentences_are_slices_of_the_text() -> None:
    text = "- Item one is here.\n  It wraps, and\ncontinues here. [ 3 ] Next  one.\n\n> Quote line."
    for sentence in split_sentences(text):
        assert normalise(sentence) in normalise(text)


# --- one rule per question type ----------------------------------------------------


RULE_CASES = [
    ("A duckling is a young duck in downy plumage.", "what", "What is a duckling?"),
    ("A male duck is called a drake by most breeders.", "what", "What is a male duck called?"),
    (
        "The tribe Oxyurini contains the stifftails and other diving ducks.",
        "what",
        "What does the tribe Oxyurini contain?",
    ),
    (
        "Ducklings are particularly vulnerable because they cannot fly yet.",
        "why",
        "Why are Ducklings particularly vulnerable?",
    ),
    (
        "To submerge more easily, diving ducks are heavier than dabbling ducks.",
        "why",
        "Why are diving ducks heavier than dabbling ducks?",
    ),
    (
        "The pecten is also used to preen feathers and to hold slippery food items.",
        "how",
        "How is the pecten used?",
    ),
    (
        "Dabbling ducks feed on the surface of water by up-ending their bodies.",
        "how",
        "How do dabbling ducks feed on the surface of water?",
    ),
    (
        "IBM was founded in 1911 as a holding company of record-keeping manufacturers.",
        "when",
        "When was IBM founded as a holding company of record-keeping manufacturers?",
    ),
    (
        "In 1961, IBM introduced the highly successful Selectric typewriter.",
        "when",
        "When did IBM introduce the highly successful Selectric typewriter?",
    ),
    (
        "Alexander Dey invented the dial recorder for office workers.",
        "who",
        "Who invented the dial recorder for office workers?",
    ),
    (
        "The first typewriter was patented by Christopher Latham Sholes.",
        "who",
        "Who patented the first typewriter?",
    ),
    (
        "IBM is the largest industrial research organization in the world.",
        "which",
        "Which is the largest industrial research organization in the world?",
    ),
    (
        "Most ducks eat food sources such as grasses, aquatic plants and insects.",
        "which",
        "Which food sources do most ducks eat?",
    ),
    (
        "The plumage of juvenile birds generally resembles that of the female.",
        "explain",
        "the plumage of juvenile birds in the context of Morphology (Duck).",
    ),
]


@pytest.mark.parametrize(("sentence", "kind", "question"), RULE_CASES)
def test_each_rule_gives_its_type(sentence: str, kind: str, question: str) -> None:
    pairs = generate_pairs(sentence, ["Duck", "Morphology"], max_pairs=1)
    assert len(pairs) == 1
    assert pairs[0].question_type == kind
    assert pairs[0].question.endswith(question), pairs[0].question
    assert pairs[0].answer == sentence
    assert_well_formed(pairs, sentence)


def test_a_chunk_gets_a_mix_of_types() -> None:
    text = (
        "A duckling is a young duck in downy plumage. Ducklings are vulnerable because they"
        " cannot fly. The pecten is used to preen feathers and to hold food. IBM was founded"
        " in 1911 as a holding company. Alexander Dey invented the dial recorder for offices."
        " The plumage of juvenile birds generally resembles that of the female."
    )
    pairs = generate_pairs(text, ["Birds"], max_pairs=6)
    assert {p.question_type for p in pairs} == {"what", "why", "how", "when", "who", "explain"}
    assert_well_formed(pairs, text)


def test_a_pronoun_sentence_joins_the_answer() -> None:
    text = (
        "The Call duck is another example of a domestic duck breed. Its name comes from its"
        " original use as a decoy to attract wild mallards into traps."
    )
    [pair] = generate_pairs(text, ["Domestication"], max_pairs=5)
    assert pair.answer == text


def test_instructions_with_a_list_give_a_how_to_question() -> None:
    text = (
        "To get started with swimming, first lay down in the water and try not to drown:\n"
        "- You can relax and look around\n- Paddle about\n- Enjoy summer warmth"
    )
    [pair] = generate_pairs(text, ["Let’s swim!"])
    assert pair.question == "How do you get started with swimming?"
    assert pair.question_type == "how"
    assert pair.answer.endswith("- Enjoy summer warmth")
    assert_well_formed([pair], text)


# --- guarantees ----------------------------------------------------------------------


MESSY = (
    "## Feeding\n\nDucks eat food sources such as\ngrasses , aquatic plants and fish . [ 24 ]"
    " Along the edge of the bill, there is a comb-like structure called a pecten. This strains"
    " the water and traps any food.\n\n- The pecten is also used to preen feathers.\n"
    "| Food | Calories |\n|---|---|\n| Leaves | 50 |\n\nIBM was founded in 1911 as a"
    " holding company.[1]  It was renamed in 1924.\nDiving ducks forage deep underwater, e.g."
    " in lakes. Dr. J. Smith wrote about them in the U.S. in 1990."
)


def test_answers_are_verbatim_on_crafted_text() -> None:
    pairs = generate_pairs(MESSY, ["Duck", "Feeding"], max_pairs=10)
    assert len(pairs) >= 4
    assert_well_formed(pairs, MESSY)


@pytest.fixture(scope="module")
def example_markdown() -> dict[str, str]:
    """Markdown of real example documents, as docling converts them (offline)."""
    from docling.document_converter import DocumentConverter

    converter = DocumentConverter()
    names = ("wiki_duck.html", "word_sample.docx", "wiki.md")
    return {
        name: converter.convert(EXAMPLES / name).document.export_to_markdown() for name in names
    }


def test_answers_are_verbatim_on_real_documents(example_markdown: dict[str, str]) -> None:
    total = 0
    for name, markdown in example_markdown.items():
        # as exported, and without link targets (as the pipeline's chunker writes text)
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
        for text in pieces(markdown) + pieces(plain):
            pairs = generate_pairs(text, ["Example"], max_pairs=5, title=name)
            assert len(pairs) <= 5
            assert_well_formed(pairs, text)
            total += len(pairs)
    assert total >= 40  # real prose does give pairs


def test_deterministic_also_across_processes() -> None:
    first = generate_pairs(MESSY, ["Duck", "Feeding"], max_pairs=10)
    assert first == generate_pairs(MESSY, ["Duck", "Feeding"], max_pairs=10)
    code = (
        "import sys; from synth_assets.generation.model_free import generate_pairs as g;"
        "pairs = g(sys.stdin.read(), ['Duck', 'Feeding'], max_pairs=10);"
        "print([tuple(vars(p).values()) for p in pairs])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            input=MESSY,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == str([tuple(vars(p).values()) for p in first])


def test_max_pairs_is_respected() -> None:
    assert len(generate_pairs(MESSY, [], max_pairs=2)) == 2
    assert generate_pairs(MESSY, [], max_pairs=0) == []
    assert generate_pairs("", ["Heading"]) == []


def test_no_prose_gives_no_pairs() -> None:
    languages = [("de", "Deutsch"), ("fr", "Français"), ("es", "Español"), ("it", "Italiano")]
    link_list = "\n".join(
        f"- [{name}](https://{code}.wikipedia.org/wiki/Duck)" for code, name in languages
    )
    navigation = "Contents\nmove to sidebar\nhide\n- (Top)\n- 1 Etymology\n- 2 Taxonomy"
    table = "| Food | Calories |\n|---|---|\n| Leaves | 50 |\n| Berries | 150 |"
    references = (
        "- Hume, Julian H. (2012). Extinct Birds . London: Christopher Helm."
        " ISBN 978-1-4729-3744-5 ."
    )
    for text in (link_list, navigation, table, references):
        assert generate_pairs(text, ["Duck"]) == []


def test_template_version_is_recorded() -> None:
    assert MODEL_FREE_TEMPLATE_VERSION == "model-free-v1"
