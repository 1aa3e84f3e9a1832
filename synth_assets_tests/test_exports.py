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
    pairs_digest,
    pairs_digests,
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


def test_every_file_loads_in_datasets_and_matches(tmp_path):
    result = export(tmp_path)
    assert result.created and set(result.rows) == {"alpaca", "sharegpt", "messages"}
    for fmt in ("alpaca", "sharegpt", "messages"):
        folder = result.path / fmt
        from_disk = datasets.load_from_disk(str(folder / "hf"))
        jsonl = datasets.load_dataset("json", data_files={s: str(folder / f"{s}.jsonl") for s in ("train", "validation")})
        parquet = datasets.load_dataset("parquet", data_files={s: str(folder / f"{s}.parquet") for s in ("train", "validation")})
        for split in ("train", "validation"):
            assert len(from_disk[split]) == len(jsonl[split]) == len(parquet[split]) == result.rows[fmt][split]
            assert from_disk[split].to_list() == jsonl[split].to_list() == parquet[split].to_list()
    alpaca = datasets.load_from_disk(str(result.path / "alpaca" / "hf"))["train"][0]
    assert set(alpaca) >= {"instruction", "input", "output", *PROVENANCE_COLUMNS}
    assert alpaca["language"] == "en"  # the pair's language travels with the row
    assert alpaca["input"] == "" and "matters" in alpaca["output"]
    sharegpt = datasets.load_from_disk(str(result.path / "sharegpt" / "hf"))["train"][0]
    assert [t["from"] for t in sharegpt["conversations"]] == ["human", "gpt"]


def test_chat_rows_are_what_trl_calls_conversational(tmp_path):
    # TRL installs beside the CPU torch here; this is TRL's own check, not a copy of it.
    from trl.data_utils import is_conversational

    result = export(tmp_path, system_prompt="Answer from the company's documents.")
    rows = datasets.load_from_disk(str(result.path / "messages" / "hf"))["train"]
    assert len(rows) and all(is_conversational(row) for row in rows)
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    sharegpt = datasets.load_from_disk(str(result.path / "sharegpt" / "hf"))["train"][0]
    assert [t["from"] for t in sharegpt["conversations"]] == ["system", "human", "gpt"]


def test_no_document_is_in_both_splits(tmp_path):
    result = export(tmp_path)
    rows = datasets.load_from_disk(str(result.path / "alpaca" / "hf"))
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
    row = datasets.load_from_disk(str(result.path / "alpaca" / "hf"))["train"][0]
    assert set(row) == {"instruction", "input", "output"}


def test_reasoning_gives_chain_of_thought_variants_and_plain_ones_stay_plain(tmp_path):
    result = export(tmp_path, kept_pairs(reasoning=True))
    assert {"alpaca_cot", "sharegpt_cot", "messages_cot"} <= set(result.rows)
    plain = datasets.load_from_disk(str(result.path / "alpaca" / "hf"))["train"][0]["output"]
    cot = datasets.load_from_disk(str(result.path / "alpaca_cot" / "hf"))["train"][0]["output"]
    assert "<think>" not in plain and cot.startswith("<think>\n") and cot.endswith(plain)


def test_dataset_card_front_matter_and_llama_factory_info_point_at_real_files(tmp_path):
    result = export(tmp_path, license="cc-by-4.0")
    card = (result.path / "README.md").read_text()
    front_matter = yaml.safe_load(card.split("---")[1])
    assert front_matter["license"] == "cc-by-4.0" and front_matter["size_categories"] == ["n<1K"]
    for config in front_matter["configs"]:
        for data_file in config["data_files"]:
            assert (result.path / data_file["path"]).is_file()
    assert "75.0%" in card and "low_information" in card
    # The Hub's loader reads the card's configs from the folder itself.
    messages = datasets.load_dataset(str(result.path), "messages")
    assert set(messages) == {"train", "validation"}

    info = json.loads((result.path / "dataset_info.json").read_text())
    assert info["synth_assets_sharegpt"]["formatting"] == "sharegpt"
    assert info["synth_assets_alpaca"]["columns"]["prompt"] == "instruction"
    for entry in info.values():
        assert (result.path / entry["file_name"]).is_file()


def test_an_empty_split_still_loads(tmp_path):
    one_document = kept_pairs()
    one_document = one_document[one_document["document_id"] == "alpha.md"].assign(split="train")
    result = export(tmp_path, one_document)
    rows = datasets.load_from_disk(str(result.path / "alpaca" / "hf"))
    assert len(rows["train"]) == 3 and len(rows["validation"]) == 0


def test_the_digests_of_many_documents_are_each_documents_own_digest():
    # training_dataset fingerprints every document's pairs at once; a document's rows
    # must get the fingerprint its formatted rows recorded when it was formatted alone.
    pairs = kept_pairs(reasoning=True).sample(frac=1, random_state=3).reset_index(drop=True)
    pairs.loc[pairs["document_id"] == "beta.pdf", "reasoning"] = None
    digests = pairs_digests(pairs, ["gamma.docx", "alpha.md", "beta.pdf", "no_pairs.md"])
    for document_id in ("alpha.md", "beta.pdf", "gamma.docx"):
        assert digests[document_id] == pairs_digest(pairs[pairs["document_id"] == document_id])
    assert digests["no_pairs.md"] == pairs_digest(pairs.iloc[:0])
    assert len(set(digests.values())) == 4
