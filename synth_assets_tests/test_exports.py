"""Training-ready exports: every file loads in `datasets`, chat rows are TRL-conversational,
splits are by document, versions are content-derived and never overwritten."""

from __future__ import annotations

import json

import datasets
import pandas as pd
import pytest
import yaml

from synth_assets.core.exporting import (
    LATEST_FILE,
    PROVENANCE_COLUMNS,
    ExportOptions,
    build_format_rows,
    publish,
    published_version,
    write_export,
)
from synth_assets.core.formats import split_documents

STATS = {"documents": 3, "generators": ["model-free"], "models": [], "prompt_versions": ["model-free-v1"],
         "generated": 12, "kept": 9, "pass_rate": 0.75, "rejections_by_reason": {"low_information": 3}}


def kept_pairs(reasoning: bool = False) -> pd.DataFrame:
    rows = []
    for d in ("alpha.md", "beta.pdf", "gamma.docx"):
        for i in range(3):
            rows.append({
                "pair_id": f"{d}#c0000#q{i:02d}", "document_id": d, "chunk_id": f"{d}#c0000",
                "question": f"What does {d} say about topic {i}?", "answer": f"{d} says topic {i} matters.",
                "reasoning": f"The chunk states that topic {i} matters." if reasoning else None,
                "source_file": d, "heading_path": "Intro", "page_start": 1, "page_end": 1,
                "generator": "model-free", "model": None, "prompt_version": "model-free-v1",
                "language": "en",
            })
    pairs = pd.DataFrame(rows)
    pairs["split"] = pairs["document_id"].map(split_documents(list(pairs["document_id"]), 0.34, seed=42))
    return pairs


def export(tmp_path, pairs=None, **options):
    opts = ExportOptions(**options)
    frames = build_format_rows(kept_pairs() if pairs is None else pairs, opts)
    return write_export(frames, tmp_path / "exports", opts, STATS)


def load(result, fmt: str):
    """A format of a written version, as fine-tuners load it: by the card's configs."""
    return datasets.load_dataset(str(result.path), fmt)


def test_every_file_loads_in_datasets_and_matches(tmp_path):
    result = export(tmp_path)
    assert result.created and set(result.rows) == {"alpaca", "sharegpt", "messages"}
    for fmt in ("alpaca", "sharegpt", "messages"):
        folder = result.path / fmt
        by_card = load(result, fmt)
        jsonl = datasets.load_dataset("json", data_files={s: sorted(str(p) for p in (folder / "jsonl" / s).glob("*.jsonl"))
                                                          for s in ("train", "validation")})
        parquet = datasets.load_dataset("parquet", data_files={s: f"{folder}/{s}/*.parquet" for s in ("train", "validation")})
        for split in ("train", "validation"):
            assert len(by_card[split]) == len(jsonl[split]) == len(parquet[split]) == result.rows[fmt][split]
            assert by_card[split].to_list() == parquet[split].to_list()
            assert [r["pair_id"] for r in jsonl[split]] == [r["pair_id"] for r in parquet[split]]
    alpaca = load(result, "alpaca")["train"][0]
    assert set(alpaca) >= {"instruction", "input", "output", *PROVENANCE_COLUMNS}
    assert alpaca["language"] == "en"  # the pair's language travels with the row
    assert alpaca["input"] == "" and "matters" in alpaca["output"]
    sharegpt = load(result, "sharegpt")["train"][0]
    assert [t["from"] for t in sharegpt["conversations"]] == ["human", "gpt"]


def test_chat_rows_are_what_trl_calls_conversational(tmp_path):
    # TRL installs beside the CPU torch here; this is TRL's own check, not a copy of it.
    from trl.data_utils import is_conversational

    result = export(tmp_path, system_prompt="Answer from the company's documents.")
    rows = load(result, "messages")["train"]
    assert len(rows) and all(is_conversational(row) for row in rows)
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    sharegpt = load(result, "sharegpt")["train"][0]
    assert [t["from"] for t in sharegpt["conversations"]] == ["system", "human", "gpt"]


def test_no_document_is_in_both_splits(tmp_path):
    result = export(tmp_path)
    rows = load(result, "alpaca")
    train, validation = set(rows["train"]["document_id"]), set(rows["validation"]["document_id"])
    assert train and validation and not train & validation


def test_versions_come_from_content_and_are_never_overwritten(tmp_path):
    first = export(tmp_path)
    again = export(tmp_path)
    assert again.version == first.version and not again.created
    changed = kept_pairs()
    changed.loc[0, "answer"] = "alpha.md says something else entirely."
    second = export(tmp_path, changed)
    assert second.version != first.version and second.created
    assert first.path.exists() and second.path.exists()  # the older export is still there
    # Writing is not publishing: LATEST moves only when publish is called (after the checks).
    assert published_version(tmp_path / "exports") is None
    assert publish(tmp_path / "exports", first.version) is None
    assert publish(tmp_path / "exports", second.version) == first.version
    assert (tmp_path / "exports" / LATEST_FILE).read_text().strip() == second.version
    with pytest.raises(FileNotFoundError, match="no such export"):
        publish(tmp_path / "exports", "000000000000")
    assert not list((tmp_path / "exports").glob(".staging-*"))


def test_provenance_is_removable_with_one_option(tmp_path):
    result = export(tmp_path, include_provenance=False)
    row = load(result, "alpaca")["train"][0]
    assert set(row) == {"instruction", "input", "output"}


def test_reasoning_gives_chain_of_thought_variants_and_plain_ones_stay_plain(tmp_path):
    result = export(tmp_path, kept_pairs(reasoning=True))
    assert {"alpaca_cot", "sharegpt_cot", "messages_cot"} <= set(result.rows)
    plain = load(result, "alpaca")["train"][0]["output"]
    cot = load(result, "alpaca_cot")["train"][0]["output"]
    assert "<think>" not in plain and cot.startswith("<think>\n") and cot.endswith(plain)


def test_dataset_card_front_matter_and_llama_factory_info_point_at_real_files(tmp_path):
    result = export(tmp_path, license="cc-by-4.0")
    card = (result.path / "README.md").read_text()
    front_matter = yaml.safe_load(card.split("---")[1])
    assert front_matter["license"] == "cc-by-4.0" and front_matter["size_categories"] == ["n<1K"]
    for config in front_matter["configs"]:
        for data_file in config["data_files"]:
            assert list(result.path.glob(data_file["path"]))
    assert "75.0%" in card and "low_information" in card
    # The Hub's loader reads the card's configs from the folder itself.
    messages = datasets.load_dataset(str(result.path), "messages")
    assert set(messages) == {"train", "validation"}

    info = json.loads((result.path / "dataset_info.json").read_text())
    assert info["synth_assets_sharegpt"]["formatting"] == "sharegpt"
    assert info["synth_assets_alpaca"]["columns"]["prompt"] == "instruction"
    for entry in info.values():
        # A folder of Parquet shards: LLaMA-Factory loads every file in it.
        assert (result.path / entry["file_name"]).is_dir()
        assert {p.suffix for p in (result.path / entry["file_name"]).iterdir()} == {".parquet"}


def test_an_empty_split_still_loads(tmp_path):
    one_document = kept_pairs()
    one_document = one_document[one_document["document_id"] == "alpha.md"].assign(split="train")
    result = export(tmp_path, one_document)
    # `datasets` has no split of no rows: the card lists train alone, and says why.
    rows = load(result, "alpaca")
    assert len(rows["train"]) == 3 and set(rows) == {"train"}
    assert "| alpaca | 3 | 0 |" in (result.path / "README.md").read_text()


