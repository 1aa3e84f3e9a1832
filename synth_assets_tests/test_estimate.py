"""Tokens, time and cost (issue 30): the estimate before a run, the usage recorded by a
run against the simulated server, and the settings' checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from benchmarks.sim_server import start_server_in_thread
from synth_assets.core.estimate import (
    DEFAULT_COMPLETION_TOKENS_PER_ITEM,
    History,
    NothingToEstimate,
    SampledDocument,
    estimate,
    format_estimate,
    sample_documents,
    weights,
)
from synth_assets.core.usage import Prices, usage_lines, usage_section, usage_stats

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "documents"


def _doc(document_id: str, size: int, requests: int = 10, prompt: int = 5000, items: int = 50,
         error: str | None = None) -> SampledDocument:
    tasks = {} if error else {"qa": {"requests": requests, "prompt_tokens": prompt, "items": items}}
    return SampledDocument(document_id, size, chunks=requests if not error else 0, tasks=tasks, error=error)


# -- sampling and scaling --------------------------------------------------------------

def test_a_small_folder_is_estimated_from_every_document():
    sizes = {f"d{i}.md": 100 for i in range(4)}
    assert sample_documents(sizes, 5) == list(sizes)
    assert weights([_doc(key, 100) for key in sizes], 400, 4) == dict.fromkeys(sizes, 1.0)


def test_the_sample_is_seeded_and_drawn_by_text_size():
    sizes = {**{f"small{i}.html": 100 for i in range(40)}, **{f"big{i}.md": 10_000 for i in range(10)}}
    first = sample_documents(sizes, 5, seed=1)
    assert first == sample_documents(sizes, 5, seed=1) != sample_documents(sizes, 5, seed=2)
    assert len(first) == 5 and list(sizes).index(first[0]) < list(sizes).index(first[-1])  # folder order
    # the big documents hold 96% of the text: over 20 draws, nearly every place is theirs
    drawn = [key for seed in range(20) for key in sample_documents(sizes, 5, seed)]
    assert sum(key.startswith("big") for key in drawn) >= 0.9 * len(drawn)
    with pytest.raises(ValueError, match="at least 1"):
        sample_documents(sizes, 0)


def test_each_sampled_document_stands_for_the_folders_text_over_its_own():
    sampled = [_doc("a.md", 1_000), _doc("b.md", 4_000)]
    # 2 of 20 documents drawn, 50,000 characters in the folder: mean of counts per character x 50,000
    assert weights(sampled, 50_000, 20) == pytest.approx({"a.md": 25.0, "b.md": 6.25})


def test_the_estimate_scales_the_sample_and_takes_completions_from_recorded_runs():
    sampled = [_doc("a.md", 1_000, requests=10, prompt=5_000, items=50),
               _doc("b.md", 3_000, requests=30, prompt=15_000, items=150),
               _doc("bad.md", 2_000, error="could not be read")]
    history = History(per_task={"qa": {"requests": 100, "prompt_tokens": 1, "completion_tokens": 25_000}},
                      completion_tokens=50_000, seconds=100.0, runs=2)
    result = estimate(sampled, 60_000, 40, history=history, max_tokens=1024, use_judge=False,
                      throughput_setting=None, prices=Prices(per_hour=3.6), tokenizer="test-tokenizer")
    # 10 requests per 1,000 characters in both documents that parsed, none in the failed one
    # (failures as often elsewhere): 60,000 x (10/1,000 + 10/1,000 + 0) / 3 = 400
    assert result.totals["requests"] == pytest.approx(400)
    assert result.totals["prompt_tokens"] == pytest.approx(200_000)
    assert result.totals["completion_tokens"] == pytest.approx(400 * 250)  # 250 per request, recorded
    assert result.throughput == pytest.approx(500) and result.seconds == pytest.approx(200)
    assert result.cost == pytest.approx(3.6 * 200 / 3600)
    text = format_estimate(result, "/docs")
    assert "bad.md: could not be read" in text and "~400" in text and "250 per request, from 2 recorded runs" in text
    assert "measured over 2 recorded runs" in text and "0:03:20" in text


def test_without_recorded_runs_completions_are_the_defaults_and_time_needs_a_throughput():
    sampled = [_doc("a.md", 1_000, requests=2, prompt=1_000, items=10)]
    result = estimate(sampled, 1_000, 1, history=History(), max_tokens=1024, use_judge=True,
                      throughput_setting=None, prices=Prices(per_million_completion_tokens=2.0), tokenizer="t")
    qa = DEFAULT_COMPLETION_TOKENS_PER_ITEM["qa"] * 10
    assert result.per_task["qa"]["completion_tokens"] == pytest.approx(qa)
    # the judge: one request per generated item, shown the source and what was written
    assert result.per_task["judge"]["requests"] == pytest.approx(10)
    assert result.per_task["judge"]["completion_tokens"] == pytest.approx(10 * DEFAULT_COMPLETION_TOKENS_PER_ITEM["judge"])
    assert result.seconds is None and "set SYNTH_ASSETS_THROUGHPUT_TOKENS_PER_S" in format_estimate(result, "/d")
    assert result.cost == pytest.approx(2.0 * result.totals["completion_tokens"] / 1e6)  # per token: no time needed
    # A request cannot write more than max_tokens.
    capped = estimate(sampled, 1_000, 1, history=History(), max_tokens=100, use_judge=False,
                      throughput_setting=42.0, prices=Prices(), tokenizer="t")
    assert capped.per_task["qa"]["completion_tokens"] == pytest.approx(2 * 100)
    assert capped.seconds == pytest.approx(200 / 42.0) and capped.throughput_source == "SYNTH_ASSETS_THROUGHPUT_TOKENS_PER_S"


def test_recorded_prompts_scale_the_counts_only_for_the_tokenizer_they_were_measured_with():
    sampled = [_doc("a.md", 1_000, requests=10, prompt=5_000, items=50)]
    history = History(prompt_calibration={"requests": 64, "server": 8_000, "tokenizer_count": 10_000},
                      calibration_tokenizers=("tok",))
    kwargs = dict(history=history, max_tokens=1024, use_judge=False, throughput_setting=None, prices=Prices())
    same = estimate(sampled, 1_000, 1, tokenizer="tok", **kwargs)
    assert same.prompt_ratio == pytest.approx(0.8) and same.totals["prompt_tokens"] == pytest.approx(4_000)
    assert "x0.800 as the servers counted 64 recorded prompts" in format_estimate(same, "/d")
    other = estimate(sampled, 1_000, 1, tokenizer="another", **kwargs)
    assert other.prompt_ratio is None and other.totals["prompt_tokens"] == pytest.approx(5_000)


def test_text_size_measures_the_text_of_html_and_office_files_not_their_bytes(tmp_path):
    from synth_assets.core.estimate import text_size

    page = tmp_path / "page.html"
    page.write_text("<html><head><style>p {color: red}</style><script>var x = 1;</script></head>"
                    "<body><p>Ducks   swim.</p><!-- a comment --></body></html>")
    assert text_size(page) == len("Ducks swim.")
    assert text_size(EXAMPLES / "wiki.md") == (EXAMPLES / "wiki.md").stat().st_size
    docx = EXAMPLES / "lorem_ipsum.docx"
    assert 3_000 < text_size(docx) < docx.stat().st_size / 3  # its text runs, not its zipped bytes
    pdf = EXAMPLES / "multi_page.pdf"
    assert 5_000 < text_size(pdf) < pdf.stat().st_size / 10  # its text layer, not its bytes
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"not a zip")
    assert text_size(broken) == 9


def test_a_folder_whose_sampled_documents_all_fail_says_why_for_each():
    sampled = [_doc("x.pdf", 10, error="could not be read as PDF: bad header"),
               _doc("y.docx", 10, error="is not a valid Word file")]
    with pytest.raises(NothingToEstimate) as failure:
        estimate(sampled, 20, 2, history=History(), max_tokens=512, use_judge=False,
                 throughput_setting=None, prices=Prices(), tokenizer="t")
    assert "x.pdf: could not be read as PDF: bad header" in str(failure.value)
    assert "y.docx: is not a valid Word file" in str(failure.value)


# -- the folder, parsed and chunked in process -------------------------------------------

def _settings(folder: Path, **environ: str):
    from synth_assets.settings import Settings

    return Settings.from_env({"SYNTH_ASSETS_DOCUMENTS_DIR": str(folder), "SYNTH_ASSETS_GENERATION_BACKEND": "openai",
                              "SYNTH_ASSETS_MODEL": "sim-model", **environ})


def test_estimate_main_on_a_folder_of_broken_files_prints_each_and_exits_1(tmp_path, monkeypatch, capsys):
    from synth_assets.run import estimate_main

    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "broken.pdf").write_bytes(b"not a pdf at all")
    (folder / "broken.docx").write_bytes(b"not a zip either")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    assert estimate_main(_settings(folder), 5, 0) == 1
    err = capsys.readouterr().err
    assert "broken.pdf: " in err and "broken.docx: " in err and "every sampled document failed" in err


def test_the_settings_refuse_a_price_or_throughput_that_is_not_a_positive_number(tmp_path):
    for variable in ("SYNTH_ASSETS_PRICE_PER_HOUR", "SYNTH_ASSETS_THROUGHPUT_TOKENS_PER_S",
                     "SYNTH_ASSETS_PRICE_PER_MILLION_PROMPT_TOKENS", "SYNTH_ASSETS_PRICE_PER_MILLION_COMPLETION_TOKENS"):
        for bad in ("0", "-2.5", "nan", "inf", "cheap"):
            with pytest.raises(ValueError, match=variable):
                _settings(tmp_path, **{variable: bad})
    generation = _settings(tmp_path, SYNTH_ASSETS_PRICE_PER_HOUR="2.5",
                           SYNTH_ASSETS_THROUGHPUT_TOKENS_PER_S="800").resources["generation"]
    assert generation.prices() == Prices(per_hour=2.5) and generation.throughput_tokens_per_s == 800


# -- what a run recorded, against the simulated server ---------------------------------------

@pytest.fixture
def two_documents(tmp_path: Path) -> Path:
    folder = tmp_path / "two_documents"
    folder.mkdir()
    for name in ("wiki.md", "asciidoc_02.asciidoc"):
        shutil.copy(EXAMPLES / name, folder / name)
    return folder


def _run(pipeline_resources, instance, two_documents, base_url, tmp_path, **generation):
    from synth_assets.definitions import build_definitions
    from synth_assets.resources.documents import DocumentsFolder
    from synth_assets.resources.generation import GenerationResource
    from synth_assets.run import run_all

    resource = GenerationResource(backend="openai", model="sim-model", base_url=base_url,
                                  cache_path=str(tmp_path / "cache.duckdb"), **generation)
    defs = build_definitions({**pipeline_resources, "documents": DocumentsFolder(path=str(two_documents)),
                              "generation": resource})
    return defs, run_all(defs, instance, show_progress=False)


def test_the_estimate_of_a_folder_it_reads_whole_predicts_the_run(pipeline_resources, instance, two_documents,
                                                                 tmp_path):
    from synth_assets.core.estimate import format_estimate
    from synth_assets.run import estimate_folder, format_summary

    base_url, stats, stop = start_server_in_thread(slots=8, ttft=0.001, tpot=0.0001, output_tokens=40)
    try:
        before = estimate_folder(_settings(two_documents), instance=instance)
        defs, summary = _run(pipeline_resources, instance, two_documents, base_url, tmp_path,
                             price_per_million_prompt_tokens=1.0)
    finally:
        stop()
    sent = stats.snapshot()
    assert summary["failed"] == {} and sent["requests"] > 0
    # Every document was read: the requests are exactly the run's, and the prompt tokens
    # (the offline MiniLM tokenizer against the simulated server's 1.3 per word) near them.
    assert before.totals["requests"] == pytest.approx(sent["requests"])
    assert before.totals["prompt_tokens"] == pytest.approx(sent["prompt_tokens"], rel=0.2)
    # The run recorded what it asked, per kept item; its summary says so, with the cost.
    usage = summary["model_usage"]
    assert (usage["requests"], usage["prompt_tokens"], usage["completion_tokens"]) == (
        sent["requests"], sent["prompt_tokens"], sent["completion_tokens"])
    assert usage["per_server"] == {base_url: {"requests": sent["requests"], "prompt_tokens": sent["prompt_tokens"],
                                              "completion_tokens": sent["completion_tokens"]}}
    assert usage["requests_per_kept_item"] == round(sent["requests"] / summary["pairs_kept"], 2)
    assert usage["cost"] == pytest.approx(sent["prompt_tokens"] / 1e6)
    text = format_summary(summary, 1.0)
    assert f"model:           {sent['requests']} requests" in text and "per kept item" in text
    # After the run, the estimate takes the completions (40 per request here) from it, and
    # scales its prompt counts as the server counted the same prompts: the prompts it plans
    # are the ones generation sent, so the totals are the server's.
    after = estimate_folder(_settings(two_documents), instance=instance)
    assert after.totals["completion_tokens"] == pytest.approx(sent["completion_tokens"])
    assert after.prompt_ratio is not None and after.prompt_ratio != pytest.approx(1.0, abs=0.01)
    assert after.totals["prompt_tokens"] == pytest.approx(sent["prompt_tokens"], rel=0.001)
    assert after.throughput is not None and after.seconds is not None
    # a handful of requests never filled the 64 places: the time is an upper bound, and says so
    assert not after.busy and "upper bound" in format_estimate(after, "/docs")

    # The card's figures: what the dataset's items cost, also after a run that took every
    # reply from the cache (each cached reply counted as it cost when it was asked).
    from synth_assets.run import run_all

    def card_usage() -> dict:  # what training_dataset shows (and its card: usage_section of the same)
        event = instance.get_latest_materialization_event(dg.AssetKey("training_dataset"))
        return event.asset_materialization.metadata["model_usage"].value

    card = card_usage()
    assert "## Model usage" in (Path(summary["export_dir"]) / "README.md").read_text()
    assert (card["requests"], card["prompt_tokens"]) == (sent["requests"], sent["prompt_tokens"])
    again = run_all(defs, instance, show_progress=False, force=True)  # the server is gone: all from the cache
    assert again["failed"] == {} and again["model_usage"]["requests"] == 0 and stats.snapshot()["requests"] == sent["requests"]
    assert (f"no model requests this time: every reply came from the generation cache ({sent['requests']} replies, "
            f"{sent['prompt_tokens']} prompt + {sent['completion_tokens']} completion tokens when they were asked)"
            in format_summary(again, 1.0))
    cached = card_usage()
    assert (cached["requests"], cached["prompt_tokens"], cached["completion_tokens"]) == (
        sent["requests"], sent["prompt_tokens"], sent["completion_tokens"])


def test_a_server_without_usage_is_counted_with_the_tokenizer_and_the_summary_says_so(
        pipeline_resources, instance, two_documents, tmp_path):
    from synth_assets.run import format_summary

    base_url, stats, stop = start_server_in_thread(slots=8, ttft=0.001, tpot=0.0001, output_tokens=40, no_usage=True)
    try:
        _, summary = _run(pipeline_resources, instance, two_documents, base_url, tmp_path)
    finally:
        stop()
    usage = summary["model_usage"]
    requests = stats.snapshot()["requests"]
    assert usage["counted_with_tokenizer"]["requests"] == usage["requests"] == requests
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0  # counted, not zeros
    assert (f"server sent no usage for {requests} requests; counted with sentence-transformers/all-MiniLM-L6-v2"
            in format_summary(summary, 1.0))


def test_the_model_free_generator_says_it_asks_no_model(pipeline_resources, instance, two_documents):
    from synth_assets.definitions import build_definitions
    from synth_assets.resources.documents import DocumentsFolder
    from synth_assets.run import format_summary, run_all

    defs = build_definitions({**pipeline_resources, "documents": DocumentsFolder(path=str(two_documents))})
    summary = run_all(defs, instance, show_progress=False)
    assert "model:           no model requests" in format_summary(summary, 1.0)


# -- the words ----------------------------------------------------------------------------

def test_the_card_section_gives_totals_per_task_and_per_kept_item():
    stats = usage_stats({"a": {"qa": {"requests": 10, "prompt_tokens": 8000, "completion_tokens": 2000}},
                         "b": {"qa": {"requests": 5, "prompt_tokens": 4000, "completion_tokens": 1000},
                               "judge": {"requests": 20, "prompt_tokens": 9000, "completion_tokens": 1000}}},
                        40, uses_a_model=True, counted={"requests": 3, "tokenizer": "tok"})
    section = usage_section(stats)
    assert "| qa | 15 | 12000 | 3000 |" in section and "| **total** | 35 | 21000 | 4000 |" in section
    assert "per kept item (40): 625 tokens, 0.88 requests" in section
    assert "server sent no usage for 3 requests; counted with tok" in section
    assert usage_section(usage_stats({}, 10, uses_a_model=False)).startswith("## Model usage\n\nNo model requests")
    assert usage_lines(usage_stats({}, 0, uses_a_model=True)) == [
        "no model requests this time: every reply came from the generation cache"]
    partly = usage_lines(usage_stats({"a": {"qa": {"requests": 2, "prompt_tokens": 900, "completion_tokens": 100}}}, 4,
                                     uses_a_model=True,
                                     from_cache={"a": {"qa": {"requests": 3, "prompt_tokens": 1200, "completion_tokens": 150}}}))
    assert "and 3 replies from the generation cache, 1200 prompt + 150 completion tokens when they were asked " \
           "(not paid now)" in partly
