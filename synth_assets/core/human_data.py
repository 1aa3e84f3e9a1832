"""Human-labelled examples: a folder of Alpaca, ShareGPT or messages files, read, checked
row by row, deduplicated, and picked for the training dataset at a ratio.

Every .json (an array of rows, or one row) and .jsonl (a row per line) file under the
folder is read; other files are listed as skipped. The form is told per row:

- Alpaca: `{instruction, input?, output}`; a non-empty `input` follows the instruction
  after a blank line (as Alpaca's own prompt template puts it), since the dataset's
  questions stand alone.
- ShareGPT: `{conversations: [{from, value}, ...]}` with `from` human / gpt / system.
- messages: `{messages: [{role, content}, ...]}` with `role` user / assistant / system.

A row must be what the exporter writes: one question and its answer, after an optional
system turn (core/formats.py's SHAREGPT_SINGLE_TURN_SEQUENCES), with non-empty text. A row
that is not is reported with its file, its line (for a .json array, the line its element
starts on) and the reason, and the others are used; a file that is not JSON at all is
reported as a whole.

Duplicates are found as core/dedup.py finds them between documents (exact after
normalisation, then near-duplicate questions): against the synthetic questions (the
synthetic pair is kept) and among the human rows (the first in file order is kept).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from synth_assets.core.dedup import DUPLICATE_QUESTION, NEAR_DUPLICATE_QUESTION, exact_duplicate_of, near_duplicate_of
from synth_assets.core.formats import (
    SHAREGPT_ASSISTANT,
    SHAREGPT_HUMAN,
    SHAREGPT_SINGLE_TURN_SEQUENCES as SHAREGPT_ROLE_SEQUENCES,
    sharegpt_roles,
)

HUMAN = "human"  # the provenance (generator) of every human row
FILE_SUFFIXES = (".json", ".jsonl")
# messages' roles under ShareGPT's names, so both are checked against the exporter's sequences.
_MESSAGES_ROLES = {"user": SHAREGPT_HUMAN, "assistant": SHAREGPT_ASSISTANT, "system": "system"}


@dataclass(frozen=True)
class HumanRow:
    """One usable human example, with where it came from."""

    source_file: str  # relative to the folder
    line: int  # 1-based line the row starts on
    form: str  # "alpaca", "sharegpt" or "messages"
    question: str
    answer: str
    system: str | None = None

    @property
    def pair_id(self) -> str:
        return f"{HUMAN}:{self.source_file}:{self.line}"

    @property
    def document_id(self) -> str:
        # A file of human rows stands where a document stands: it is in one split only.
        return f"{HUMAN}:{self.source_file}"


@dataclass(frozen=True)
class Problem:
    """A row (line set) or a whole file (line None) that was not used, and why."""

    source_file: str
    line: int | None
    reason: str


@dataclass
class HumanData:
    files: list[str] = field(default_factory=list)  # the .json/.jsonl files read
    skipped_files: list[str] = field(default_factory=list)  # other files in the folder
    rows_read: int = 0
    rows: list[HumanRow] = field(default_factory=list)  # valid and not duplicates
    problems: list[Problem] = field(default_factory=list)
    duplicates: list[tuple[HumanRow, str, str]] = field(default_factory=list)  # (row, reason, kept row's id)


def parse_row(row: object) -> tuple[str, str, str, str | None]:
    """(form, question, answer, system) of one row; ValueError with the reason when it is
    not a single question-answer exchange in one of the three forms."""
    if not isinstance(row, dict):
        raise ValueError(f"a row must be a JSON object, not {type(row).__name__}")
    if "conversations" in row:
        return ("sharegpt", *_exchange(row["conversations"], "conversations", "from", "value", None))
    if "messages" in row:
        return ("messages", *_exchange(row["messages"], "messages", "role", "content", _MESSAGES_ROLES))
    if "instruction" in row or "output" in row:
        instruction, output = _text(row, "instruction"), _text(row, "output")
        extra = row.get("input", "")
        if not isinstance(extra, str):
            raise ValueError(f"input must be a string, not {type(extra).__name__}")
        if row.get("history"):
            raise ValueError("history holds earlier turns: the dataset holds single question-answer exchanges")
        question = f"{instruction}\n\n{extra.strip()}" if extra.strip() else instruction
        return "alpaca", question, output, None
    raise ValueError("neither Alpaca (instruction, output), ShareGPT (conversations) nor messages (messages); "
                     f"keys: {', '.join(sorted(map(str, row))) or 'none'}")


def _text(row: dict, key: str) -> str:
    if key not in row:
        raise ValueError(f"{key} is missing")
    value = row[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{key} is empty")
    return value.strip()


def _exchange(turns: object, name: str, role_key: str, text_key: str,
              roles: dict[str, str] | None) -> tuple[str, str, str | None]:
    if not isinstance(turns, list):
        raise ValueError(f"{name} must be a list of turns, not {type(turns).__name__}")
    texts = []
    for i, turn in enumerate(turns, 1):
        if not isinstance(turn, dict):
            raise ValueError(f"{name} turn {i} must be an object, not {type(turn).__name__}")
        if not isinstance(turn.get(role_key), str):
            raise ValueError(f"{name} turn {i} has no {role_key}")
        try:
            texts.append(_text(turn, text_key))
        except ValueError as error:
            raise ValueError(f"{name} turn {i}: {error}") from None
    as_sharegpt = [{"from": roles.get(t[role_key], t[role_key]) if roles else t[role_key]} for t in turns]
    if sharegpt_roles(json.dumps(as_sharegpt)) not in SHAREGPT_ROLE_SEQUENCES:
        expected = " or ".join(
            ",".join(next((own for own, ours in (roles or {}).items() if ours == r), r) for r in s.split(","))
            for s in SHAREGPT_ROLE_SEQUENCES)
        raise ValueError(f"{name} go {','.join(t[role_key] for t in turns) or 'nowhere (no turns)'}; "
                         f"expected {expected}: one question, then its answer")
    system = texts[0] if len(texts) == 3 else None
    return texts[-2], texts[-1], system


def read_file_rows(text: str, suffix: str) -> tuple[list[tuple[int, object]], list[tuple[int, str]]]:
    """(line, row) of every row of a file's text, and (line, reason) of the lines that are
    not JSON. ValueError when the file is not JSON (or JSON Lines) at all."""
    if suffix == ".jsonl":
        rows, broken = [], []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as error:
                    broken.append((number, f"not JSON: {error.msg} (column {error.colno})"))
        if broken and not rows:
            raise ValueError(f"not JSON Lines: no line parses (line {broken[0][0]}: {broken[0][1]})")
        return rows, broken
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
    if not isinstance(data, list):
        return [(1, data)], []
    return list(zip(_element_lines(text), data)), []


def _element_lines(text: str) -> list[int]:
    """The line each element of a JSON array (known to parse) starts on."""
    decoder, lines = json.JSONDecoder(), []
    position = text.index("[") + 1
    while True:
        while text[position] in " \t\r\n,":
            position += 1
        if text[position] == "]":
            return lines
        lines.append(text.count("\n", 0, position) + 1)
        _, position = decoder.raw_decode(text, position)


def read_human_folder(folder: Path) -> HumanData:
    """Every row of the folder's .json/.jsonl files: the valid ones, deduplicated among
    themselves (first in file order kept), and the problems."""
    data = HumanData()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if path.suffix.lower() not in FILE_SUFFIXES:
            data.skipped_files.append(name)
            continue
        data.files.append(name)
        try:
            rows, broken = read_file_rows(path.read_text(encoding="utf-8"), path.suffix.lower())
        except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
            data.problems.append(Problem(name, None, str(error)))
            continue
        data.rows_read += len(rows) + len(broken)
        data.problems += [Problem(name, line, reason) for line, reason in broken]
        for line, row in rows:
            try:
                data.rows.append(HumanRow(name, line, *parse_row(row)))
            except ValueError as error:
                data.problems.append(Problem(name, line, str(error)))
    data.problems.sort(key=lambda p: (p.source_file, p.line or 0))
    duplicates = duplicate_rows(data.rows, [])
    data.duplicates = [(row, *duplicates[i]) for i, row in enumerate(data.rows) if i in duplicates]
    data.rows = [row for i, row in enumerate(data.rows) if i not in duplicates]
    return data


def duplicate_rows(rows: Sequence[HumanRow], synthetic: Sequence[tuple[str, str]]) -> dict[int, tuple[str, str]]:
    """{index in rows: (reason, id of the pair it repeats)} for the human rows whose question
    repeats a synthetic one (`synthetic`: (pair_id, question)) or an earlier human row.

    Synthetic questions all come first and are never compared with each other (they
    were deduplicated before); each human row is compared with all of them and with the
    human rows kept before it."""
    texts = [q for _, q in synthetic] + [row.question for row in rows]
    ids = [pid for pid, _ in synthetic] + [row.pair_id for row in rows]
    # Synthetic rows share one group (not compared among themselves); each human row has its own.
    groups = ["synthetic"] * len(synthetic) + [f"{HUMAN}:{i}" for i in range(len(rows))]
    exact = exact_duplicate_of(texts)
    near = near_duplicate_of(texts, can_keep=[e is None for e in exact], groups=groups)
    found = {}
    for i in range(len(rows)):
        e, n = exact[len(synthetic) + i], near[len(synthetic) + i]
        if e is not None:
            found[i] = (DUPLICATE_QUESTION, ids[e])
        elif n is not None:
            found[i] = (NEAR_DUPLICATE_QUESTION, ids[n])
    return found


@dataclass(frozen=True)
class Mix:
    """How many human rows go into the training split beside how many synthetic ones."""

    synthetic_rows: int
    available: int  # valid human rows not repeating a synthetic question
    picked: list[int]  # indices into the available rows, in their order
    ratio_asked: float | None  # None: every available row
    note: str

    @property
    def ratio_got(self) -> float:
        return round(len(self.picked) / self.synthetic_rows, 3) if self.synthetic_rows else 0.0


def pick_mix(available: int, synthetic_rows: int, ratio: float | None, seed: int) -> Mix:
    """The human rows to mix in: `ratio` human rows per synthetic row (rounded), a seeded
    pick when there are more than that, all of them (and a note saying so) when fewer."""
    if ratio is not None and ratio < 0:
        raise ValueError(f"the human ratio must be 0 or more (human rows per synthetic row), not {ratio}")
    wanted = available if ratio is None else round(ratio * synthetic_rows)
    if available > wanted:
        picked = sorted(random.Random(seed).sample(range(available), wanted))
        note = f"{wanted} of {available} human rows picked at random (seed {seed}) for a ratio of {ratio}"
    else:
        picked = list(range(available))
        note = ("every valid human row" if ratio is None else
                f"only {available} human rows for the {wanted} a ratio of {ratio} asks: all of them are used")
    return Mix(synthetic_rows, available, picked, ratio, note)
