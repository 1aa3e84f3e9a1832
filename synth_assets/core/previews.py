"""Markdown previews of pairs for the UI's metadata."""

import pandas as pd


def pairs_preview(pairs: pd.DataFrame, limit: int = 5) -> str:
    """A Markdown table of a few pairs: question, answer and the source heading (or the
    chunk id when the frame has no heading_path)."""
    if pairs.empty:
        return "no pairs"
    source = "heading_path" if "heading_path" in pairs.columns else "chunk_id"
    shown = pairs.head(limit)[["question_type", "question", "answer", source]].copy()
    shown["answer"] = shown["answer"].str.slice(0, 160)
    return shown.rename(columns={"heading_path": "source heading"}).to_markdown(index=False)
