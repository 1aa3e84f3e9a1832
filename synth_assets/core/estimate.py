"""What a run over a folder will ask of the model, before anything is generated.

`make run ARGS=--estimate` parses and chunks a sample of the folder's documents (all of
them when there are at most `SAMPLE_SIZE`), plans their requests as generation would
(generation/estimate.py), and this module turns those counts into the expected
requests, prompt and completion tokens of the whole folder, and, given a throughput,
the time, and, given a price, the cost.

- Sampling and scaling by `text_size`, a cheap measure of a file's text in characters
  (a plain-text file's bytes, an HTML page's text, the text runs of a Word or
  PowerPoint file, a PDF's text layer through pdfium, no layout): documents are drawn
  with probability proportional to it (seeded, without replacement), and the folder's
  counts are its total text size times the mean, over the sample, of each document's
  counts per character (the Hansen-Hurwitz estimator: unbiased, so over many draws the
  estimates average the truth). A big document is likely to be drawn and a tiny one (a
  table, a title page) rarely stands for many; a short document full of headings (more
  chunks per character) is where a draw of 5 goes furthest off. A sampled file
  that fails counts with no requests, so failures are expected in the same proportion.
- Prompt tokens are counted on the prompts themselves, with the tokenizer that sizes the
  chunks (the model's own when it is local), then scaled by what the recorded runs
  measured: the servers' prompt tokens over that tokenizer's count of the same prompts
  (the tokenizer may not be the model's; the server adds its chat template).
- Completion tokens per request come from the recorded runs of the same model (the
  `model_usage` of generated_qa_pairs: completion tokens per request, per task); for a
  task with no recorded request, `DEFAULT_COMPLETION_TOKENS_PER_ITEM` times the items
  asked, at most the `max_tokens` a request may write.
- The judge (with SYNTH_ASSETS_USE_JUDGE=1) is counted as one request per generated
  item: an upper bound, since only items that pass the cheaper rules are judged.
- Time: the expected completion tokens over the throughput, completion tokens per
  second end to end: SYNTH_ASSETS_THROUGHPUT_TOKENS_PER_S, or measured over the recorded
  runs of the model (their completion tokens over their generation time).
- The estimate is of a full run, as with `--force` and an empty generation cache:
  replies already in the cache are not subtracted; retries are not included.
"""

from __future__ import annotations

import random
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from synth_assets.core.usage import COUNTS, Prices

SAMPLE_SIZE = 5
JUDGE = "judge"
JUDGE_MAX_TOKENS = 200  # what a judge reply may write (generation.model_backend.judge_task)
# Completion tokens a model writes per item when no run of it is recorded: a JSON item
# with its question, answer, evidence quotes and, per task, its steps or turns (typical of
# 7-8B instruction models on these prompts; recorded runs replace them).
DEFAULT_COMPLETION_TOKENS_PER_ITEM = {
    "qa": 80,
    "reasoning": 180,
    "multi_hop": 110,
    "conversation": 380,
    "unanswerable": 90,
    JUDGE: 50,  # per judge request: a score and a one-line reason
}


@dataclass
class SampledDocument:
    """One sampled document: its size, and what it became (or why it failed)."""

    document_id: str
    size: int  # text_size of its file
    chunks: int = 0
    # task -> {requests, prompt_tokens, items}
    tasks: dict[str, dict[str, int]] = field(default_factory=dict)
    # prompt tokens the judge would be shown per generated item (chunk text and template)
    judge_prompt_tokens: int = 0
    error: str | None = None


_HTML = frozenset({".html", ".htm", ".xhtml"})
_OFFICE_TEXT = {".docx": re.compile(rb"<w:t(?:\s[^>]*)?>([^<]*)</w:t>"), ".pptx": re.compile(rb"<a:t>([^<]*)</a:t>")}
_HTML_DROP = re.compile(r"<(script|style|noscript)\b.*?</\1\s*>|<!--.*?-->", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")


def text_size(path: Path) -> int:
    """How much text a file holds, in characters, measured cheaply: an HTML page's text
    (tags, scripts and styles left out), the text runs of a Word or PowerPoint file (from
    its XML), a PDF's text layer (pdfium, which docling's PDF support brings; no layout),
    and the bytes of any other file (Markdown, AsciiDoc, plain text). A file that cannot
    be read so counts its bytes: the run will say what is wrong with it; here it only weighs."""
    suffix = path.suffix.lower()
    size = path.stat().st_size
    try:
        if suffix in _HTML:
            text = _TAG.sub(" ", _HTML_DROP.sub(" ", path.read_text(encoding="utf-8", errors="replace")))
            return len(" ".join(text.split()))
        if suffix in _OFFICE_TEXT:
            with zipfile.ZipFile(path) as archive:
                return sum(len(run) for name in archive.namelist() if name.endswith(".xml")
                           and name.startswith(("word/", "ppt/slides/"))
                           for run in _OFFICE_TEXT[suffix].findall(archive.read(name)))
        if suffix == ".pdf":
            return _pdf_text_size(path)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError):
        return size
    return size


def _pdf_text_size(path: Path) -> int:
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(path)
    except pypdfium2.PdfiumError as error:
        raise ValueError(str(error)) from None
    try:
        total = 0
        for index in range(len(document)):
            page = document[index]
            text = page.get_textpage()
            total += len(text.get_text_range())
            text.close()
            page.close()
        return total
    finally:
        document.close()


def sample_documents(sizes: Mapping[str, int], size: int = SAMPLE_SIZE, seed: int = 0) -> list[str]:
    """`size` of the documents (all of them when there are no more), in folder order,
    drawn with probability proportional to their text size (`sizes`), seeded: a document
    with twice the text is about twice as likely to be drawn (Efraimidis-Spirakis
    weighted sampling without replacement). Empty documents weigh as one character."""
    if size < 1:
        raise ValueError(f"the estimate's sample size must be at least 1, got {size}")
    keys = list(sizes)
    if len(keys) <= size:
        return keys
    rng = random.Random(seed)
    drawn = sorted(keys, key=lambda key: rng.random() ** (1 / max(sizes[key], 1)), reverse=True)[:size]
    chosen = set(drawn)
    return [key for key in keys if key in chosen]


def weights(sampled: Sequence[SampledDocument], folder_size: int, documents: int) -> dict[str, float]:
    """How many documents' worth each sampled one stands for: 1 each when every document
    was read; otherwise folder_size / (n x its size), so that the folder's counts are its
    text size times the sample's mean counts per character."""
    if len(sampled) >= documents:
        return {document.document_id: 1.0 for document in sampled}
    return {document.document_id: max(folder_size, 1) / (len(sampled) * max(document.size, 1))
            for document in sampled}


@dataclass(frozen=True)
class History:
    """What the recorded runs of the configured model measured: {task: counts} of the
    replies they received, and their completion tokens and generation seconds (for the
    throughput)."""

    per_task: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    completion_tokens: int = 0
    seconds: float = 0.0
    runs: int = 0
    # {requests, server, tokenizer_count}: prompts the servers counted and the chunks'
    # tokenizer counted again (generated_qa_pairs' prompt_tokens_against_tokenizer)
    prompt_calibration: Mapping[str, int] = field(default_factory=dict)
    calibration_tokenizers: tuple[str, ...] = ()
    peak_in_flight: int = 0  # the most requests any recorded run had in flight

    def prompt_ratio(self, tokenizer: str) -> float | None:
        """The servers' prompt tokens over `tokenizer`'s count of the same prompts, when the
        recorded runs measured it with that tokenizer."""
        if self.calibration_tokenizers != (tokenizer,) or not self.prompt_calibration.get("tokenizer_count"):
            return None
        return self.prompt_calibration["server"] / self.prompt_calibration["tokenizer_count"]

    def completion_per_request(self, task: str) -> float | None:
        counts = self.per_task.get(task, {})
        return counts["completion_tokens"] / counts["requests"] if counts.get("requests") else None

    @property
    def throughput(self) -> float | None:
        return self.completion_tokens / self.seconds if self.completion_tokens and self.seconds > 0 else None


@dataclass
class Estimate:
    documents: int
    sampled: list[SampledDocument]
    per_task: dict[str, dict[str, float]]  # task -> {requests, prompt_tokens, completion_tokens}
    chunks: float
    completion_source: dict[str, str]  # task -> where its completion tokens per request came from
    throughput: float | None
    throughput_source: str
    seconds: float | None
    prices: Prices
    cost: float | None
    tokenizer: str
    prompt_ratio: float | None = None  # applied to the counted prompt tokens (None: not measured)
    calibration_requests: int = 0
    # False: the recorded runs never filled the server (fewer requests in flight than the
    # bound), so their throughput is a floor and the time an upper bound.
    busy: bool = True

    @property
    def totals(self) -> dict[str, float]:
        total: dict[str, float] = dict.fromkeys(COUNTS, 0.0)
        for counts in self.per_task.values():
            for key in COUNTS:
                total[key] += counts[key]
        return total

    @property
    def failed(self) -> list[SampledDocument]:
        return [document for document in self.sampled if document.error is not None]


class NothingToEstimate(Exception):
    """Every sampled document failed: there is nothing to scale from."""


def estimate(sampled: list[SampledDocument], folder_size: int, documents: int, *, history: History,
             max_tokens: int, use_judge: bool, throughput_setting: float | None, prices: Prices,
             tokenizer: str, throughput_variable: str = "SYNTH_ASSETS_THROUGHPUT_TOKENS_PER_S",
             max_in_flight: int | None = None) -> Estimate:
    """The folder's expected requests, tokens, time and cost from its sampled documents."""
    if not sampled:
        raise NothingToEstimate("the folder holds no document")
    if all(document.error is not None for document in sampled):
        raise NothingToEstimate("every sampled document failed:\n" + "\n".join(
            f"  - {document.document_id}: {document.error}" for document in sampled))
    weight = weights(sampled, folder_size, documents)
    # The sample's counts, each document weighted by the documents it stands for.
    per_task: dict[str, dict[str, float]] = {}
    items: dict[str, float] = {}
    judge_prompt = 0.0
    for document in sampled:
        judge_prompt += document.judge_prompt_tokens * weight[document.document_id]
        for task, counts in document.tasks.items():
            scaled_counts = per_task.setdefault(task, {"requests": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0})
            scaled_counts["requests"] += counts["requests"] * weight[document.document_id]
            scaled_counts["prompt_tokens"] += counts["prompt_tokens"] * weight[document.document_id]
            items[task] = items.get(task, 0.0) + counts["items"] * weight[document.document_id]
    source: dict[str, str] = {}
    for task, counts in per_task.items():
        counts["completion_tokens"], source[task] = _completion(task, counts["requests"], items[task], history,
                                                               max_tokens)
    if use_judge and items:
        generated = sum(items.values())
        # The judge sees each item's question and answer beside the source: about what the
        # generator wrote for it.
        written = sum(counts["completion_tokens"] for counts in per_task.values())
        judge = {"requests": generated, "prompt_tokens": judge_prompt + written, "completion_tokens": 0.0}
        judge["completion_tokens"], source[JUDGE] = _completion(JUDGE, generated, generated, history,
                                                                JUDGE_MAX_TOKENS)
        per_task[JUDGE] = judge
    # The tokenizer may not be the model's, and the server adds its chat template: scale
    # the counts as the recorded runs' servers counted the same prompts.
    ratio = history.prompt_ratio(tokenizer)
    for counts in per_task.values():
        counts["prompt_tokens"] *= ratio or 1.0
    completion = sum(counts["completion_tokens"] for counts in per_task.values())
    prompt = sum(counts["prompt_tokens"] for counts in per_task.values())
    if throughput_setting is not None:
        throughput, throughput_source = throughput_setting, f"{throughput_variable}"
    elif history.throughput is not None:
        throughput = history.throughput
        throughput_source = f"measured over {history.runs} recorded run{'s' if history.runs != 1 else ''}"
    else:
        throughput, throughput_source = None, f"no recorded run of this model; set {throughput_variable}"
    seconds = completion / throughput if throughput else None
    return Estimate(
        documents=documents, sampled=sampled, per_task=per_task,
        chunks=sum(document.chunks * weight[document.document_id] for document in sampled), completion_source=source,
        throughput=throughput, throughput_source=throughput_source, seconds=seconds, prices=prices,
        cost=prices.cost(prompt, completion, seconds), tokenizer=tokenizer, prompt_ratio=ratio,
        calibration_requests=history.prompt_calibration.get("requests", 0) if ratio else 0,
        busy=max_in_flight is None or history.peak_in_flight >= max_in_flight or throughput_setting is not None)


def _completion(task: str, requests: float, items: float, history: History, max_tokens: int) -> tuple[float, str]:
    measured = history.completion_per_request(task)
    if measured is not None:
        runs = f"{history.runs} recorded run{'s' if history.runs != 1 else ''}"
        return requests * measured, f"{measured:.0f} per request, from {runs}"
    per_item = DEFAULT_COMPLETION_TOKENS_PER_ITEM[task]
    per_request = min(per_item * items / requests, max_tokens) if requests else 0
    return requests * per_request, f"{per_item} per item (default: no recorded run of this task)"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_estimate(result: Estimate, folder: str) -> str:
    """The lines `make run ARGS=--estimate` prints."""
    total = result.totals
    ok = [document for document in result.sampled if document.error is None]
    what = ("every document" if len(result.sampled) == result.documents
            else f"{len(result.sampled)} sampled documents, scaled by their text size")
    lines = [f"estimate for {_plural(result.documents, 'document')} in {folder} (from {what}); nothing was generated"]
    if result.failed:
        lines.append(f"  failed in the sample: {len(result.failed)} (expected in the same proportion in the rest)")
        lines += [f"    - {document.document_id}: {document.error}" for document in result.failed]
    lines += [
        f"  sampled:           {_plural(len(ok), 'document')} parsed, {_plural(sum(d.chunks for d in ok), 'chunk')}",
        f"  chunks:            ~{result.chunks:,.0f}",
        f"  requests:          ~{total['requests']:,.0f}"
        + (" (" + ", ".join(f"{task} {c['requests']:,.0f}" for task, c in result.per_task.items()) + ")"
           if len(result.per_task) > 1 else ""),
        f"  prompt tokens:     ~{total['prompt_tokens']:,.0f} (counted with {result.tokenizer}"
        + (f", x{result.prompt_ratio:.3f} as the servers counted {result.calibration_requests} recorded prompts)"
           if result.prompt_ratio else "; no recorded run measured it against the server's count)"),
        f"  completion tokens: ~{total['completion_tokens']:,.0f} ("
        + "; ".join(f"{task}: {text}" for task, text in result.completion_source.items()) + ")",
    ]
    if result.seconds is None:
        lines.append(f"  time:              unknown ({result.throughput_source})")
    else:
        lines.append(f"  time:              ~{_duration(result.seconds)} at {result.throughput:,.1f} completion "
                     f"tokens/s ({result.throughput_source})")
        if not result.busy:
            lines.append("                     (the recorded runs never filled the server: fewer requests in flight "
                         "than it takes, so this is an upper bound; a full run is faster)")
    if result.prices.any:
        if result.cost is None:
            lines.append(f"  cost:              unknown: a price per hour needs the time ({result.prices.describe()})")
        else:
            lines.append(f"  cost:              ~{result.cost:,.4g} (at {result.prices.describe()})")
    else:
        lines.append("  cost:              no price set (SYNTH_ASSETS_PRICE_PER_HOUR, "
                     "SYNTH_ASSETS_PRICE_PER_MILLION_PROMPT_TOKENS / _COMPLETION_TOKENS)")
    return "\n".join(lines)

