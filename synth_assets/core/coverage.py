"""Coverage: which parts of each document produced training data.

A chunk is covered when at least one kept item draws on it (every chunk of the item's
`source_chunk_ids`, so a multi-hop item covers two or three; its `chunk_id` when the
list is absent). A heading (a document_chunks.heading_path value) is covered when one
of its chunks is. Boilerplate chunks are never sent to the generator, so they are not
counted: a document of navigation links and prose is judged on its prose.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

# The card's per-document table: the least covered documents first, at most this many.
MAX_DOCUMENT_ROWS = 50


@dataclass
class Coverage:
    chunks: int = 0
    covered_chunks: int = 0
    headings: int = 0
    covered_headings: int = 0
    uncovered_chunk_ids: list[str] = field(default_factory=list)

    @property
    def chunk_share(self) -> float | None:
        """Covered share of the counted chunks; None when there are none (nothing to cover)."""
        return self.covered_chunks / self.chunks if self.chunks else None

    @property
    def heading_share(self) -> float | None:
        return self.covered_headings / self.headings if self.headings else None

    def add(self, other: Coverage) -> None:
        self.chunks += other.chunks
        self.covered_chunks += other.covered_chunks
        self.headings += other.headings
        self.covered_headings += other.covered_headings
        self.uncovered_chunk_ids += other.uncovered_chunk_ids

    def summary(self) -> dict:
        """The figures as plain values (metadata, the dataset card), without the chunk list."""
        return {"chunk_coverage": _rounded(self.chunk_share), "chunks": self.chunks,
                "covered_chunks": self.covered_chunks, "heading_coverage": _rounded(self.heading_share),
                "headings": self.headings, "covered_headings": self.covered_headings,
                "uncovered_chunks": len(self.uncovered_chunk_ids)}


def _rounded(share: float | None) -> float | None:
    return None if share is None else round(share, 3)


def item_chunk_ids(chunk_id: str, source_chunk_ids) -> list[str]:
    """Every chunk an item draws on: its JSON `source_chunk_ids` list, else its chunk."""
    if isinstance(source_chunk_ids, str) and source_chunk_ids:
        return list(json.loads(source_chunk_ids) or [chunk_id])
    if isinstance(source_chunk_ids, list | tuple):
        return list(source_chunk_ids)
    return [chunk_id]


def covered_chunk_ids(items: pd.DataFrame) -> set[str]:
    """The chunks the kept items (chunk_id, optional source_chunk_ids) draw on."""
    if items.empty:
        return set()
    sources = items["source_chunk_ids"] if "source_chunk_ids" in items else [None] * len(items)
    return {c for chunk_id, ids in zip(items["chunk_id"], sources) for c in item_chunk_ids(chunk_id, ids)}


def document_coverage(chunks: pd.DataFrame, covered: Iterable[str]) -> Coverage:
    """Coverage of one document's chunks (chunk_id, chunk_index?, heading_path, boilerplate)."""
    covered = set(covered)
    prose = chunks[~chunks["boilerplate"].astype(bool)]
    if "chunk_index" in prose:
        prose = prose.sort_values("chunk_index")
    hit = prose["chunk_id"].isin(covered)
    # Chunks without a heading (text before the first one) count as chunks, not as a heading.
    headings = prose.assign(hit=hit.to_numpy())
    headings = headings[headings["heading_path"].fillna("").str.strip() != ""]
    by_heading = headings.groupby("heading_path")["hit"].any()
    return Coverage(chunks=len(prose), covered_chunks=int(hit.sum()), headings=len(by_heading),
                    covered_headings=int(by_heading.sum()), uncovered_chunk_ids=list(prose.loc[~hit, "chunk_id"]))


def coverage_by_document(chunks: pd.DataFrame, items: pd.DataFrame,
                         document_ids: Iterable[str] | None = None) -> dict[str, Coverage]:
    """Each document's coverage (of `document_ids`, default every document in `chunks`):
    `chunks` and `items` are rows of document_chunks and of the kept items, both with
    `document_id`. Item chunk ids are matched within their own document."""
    if document_ids is None:
        document_ids = sorted(set(chunks["document_id"]))
    chunk_groups = dict(iter(chunks.groupby("document_id"))) if len(chunks) else {}
    item_groups = dict(iter(items.groupby("document_id"))) if len(items) else {}
    empty = chunks.iloc[:0] if len(chunks.columns) else pd.DataFrame(
        columns=["chunk_id", "heading_path", "boilerplate"])
    return {document_id: document_coverage(chunk_groups.get(document_id, empty),
                                           covered_chunk_ids(item_groups.get(document_id, items.iloc[:0])))
            for document_id in document_ids}


def dataset_coverage(per_document: dict[str, Coverage]) -> Coverage:
    """The same figures over every document (headings counted per document)."""
    total = Coverage()
    for coverage in per_document.values():
        total.add(coverage)
    return total


def below_minimum(coverage: Coverage, minimum: float | None) -> bool:
    """Whether the chunk coverage is below `minimum`; never with no minimum set, nor
    for a document with no chunks to cover (nothing could have covered them)."""
    share = coverage.chunk_share
    return minimum is not None and share is not None and share < minimum


def percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


def coverage_stats(per_document: dict[str, Coverage]) -> dict:
    """What the dataset card and training_dataset's metadata show: the dataset's figures
    and each document's, least covered first (documents with nothing to cover last)."""
    total = dataset_coverage(per_document)
    order = sorted(per_document.items(),
                   key=lambda item: (item[1].chunk_share is None, item[1].chunk_share or 0.0, item[0]))
    return {**total.summary(), "documents": {document_id: c.summary() for document_id, c in order}}


def coverage_markdown(stats: dict, max_rows: int = MAX_DOCUMENT_ROWS) -> str:
    """The per-document table of coverage_stats, capped at max_rows with a count of the rest."""
    documents = list(stats.get("documents", {}).items())
    lines = ["| document | chunks covered | headings covered |", "| --- | --- | --- |"]
    for document_id, c in documents[:max_rows]:
        lines.append(f"| `{document_id}` | {percent(c['chunk_coverage'])} ({c['covered_chunks']} of {c['chunks']}) "
                     f"| {percent(c['heading_coverage'])} ({c['covered_headings']} of {c['headings']}) |")
    if len(documents) > max_rows:
        lines.append(f"\n{len(documents) - max_rows} more documents, none less covered than these, are not listed.")
    return "\n".join(lines)


def coverage_section(stats: dict | None) -> str:
    """The dataset card's "## Coverage" section (nothing when no figures were given)."""
    if not stats:
        return ""
    return f"""## Coverage

Share of the documents' chunks, and of their headings, that at least one row of this
dataset draws on (a multi-hop row draws on each of its `source_chunk_ids`; boilerplate
chunks such as navigation links are not counted):

- **{percent(stats['chunk_coverage'])} of chunks** ({stats['covered_chunks']} of {stats['chunks']}; \
{stats['uncovered_chunks']} never covered)
- **{percent(stats['heading_coverage'])} of headings** ({stats['covered_headings']} of {stats['headings']})

Per document, least covered first:

{coverage_markdown(stats)}

"""
