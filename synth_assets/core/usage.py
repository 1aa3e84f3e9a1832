"""What the model was asked and what it cost: token counts, totals, and their words.

The counts come from the servers' `usage` (or vLLM's token ids); a reply without one
has its tokens counted here with a tokenizer. Totals are per task and per server, and
per kept item (what one training row cost), for `make run`'s summary, the dataset card
and the estimate (core/estimate.py). Costs follow the price settings: per hour of the
server(s) (GPU time), per million prompt and completion tokens (a hosted API), or both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The three counts of a group of requests, in this order everywhere.
COUNTS = ("requests", "prompt_tokens", "completion_tokens")
NO_MODEL_REQUESTS = "no model requests (the model-free generator asks no model)"


def count_prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """The tokens of a chat prompt: with the tokenizer's chat template when it has one (the
    model's own tokenizer), else the tokens of each message's text (a template's few
    tokens per message are then left out)."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        return len(ids["input_ids"] if isinstance(ids, Mapping) else ids)
    return sum(count_completion_tokens(tokenizer, str(message.get("content", ""))) for message in messages)


def count_completion_tokens(tokenizer: Any, text: str) -> int:
    """The tokens of a text, without special tokens."""
    return len(tokenizer.encode(text, add_special_tokens=False)) if text else 0


def add_counts(total: dict[str, int], counts: Mapping[str, Any]) -> dict[str, int]:
    """`counts` (requests, prompt and completion tokens) added into `total`; returns it."""
    for key in COUNTS:
        total[key] = total.get(key, 0) + int(counts.get(key, 0) or 0)
    return total


def usage_totals(per_document: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, int]]:
    """{task: counts} summed over documents' {task: counts} (generated_qa_pairs' model_usage)."""
    per_task: dict[str, dict[str, int]] = {}
    for tasks in per_document.values():
        for task, counts in tasks.items():
            add_counts(per_task.setdefault(task, {}), counts)
    return per_task


@dataclass(frozen=True)
class Prices:
    """What the model costs: the server(s) per hour (all their GPUs together), and a hosted
    API's prices per million prompt and completion tokens. None: not set."""

    per_hour: float | None = None
    per_million_prompt_tokens: float | None = None
    per_million_completion_tokens: float | None = None

    @property
    def any(self) -> bool:
        return any(price is not None for price in (self.per_hour, self.per_million_prompt_tokens,
                                                    self.per_million_completion_tokens))

    def cost(self, prompt_tokens: float, completion_tokens: float, seconds: float | None) -> float | None:
        """The cost of the tokens and of `seconds` of server time (None: the time is not
        known, so a price per hour cannot be applied); None when no price is set."""
        if not self.any or (self.per_hour is not None and seconds is None):
            return None
        cost = 0.0
        if self.per_hour is not None:
            cost += self.per_hour * seconds / 3600
        if self.per_million_prompt_tokens is not None:
            cost += self.per_million_prompt_tokens * prompt_tokens / 1e6
        if self.per_million_completion_tokens is not None:
            cost += self.per_million_completion_tokens * completion_tokens / 1e6
        return cost

    def describe(self) -> str:
        parts = []
        if self.per_hour is not None:
            parts.append(f"{self.per_hour:g} per hour")
        if self.per_million_prompt_tokens is not None:
            parts.append(f"{self.per_million_prompt_tokens:g} per million prompt tokens")
        if self.per_million_completion_tokens is not None:
            parts.append(f"{self.per_million_completion_tokens:g} per million completion tokens")
        return ", ".join(parts)


def check_positive(value: float | None, setting: str) -> None:
    """A price or throughput must be a positive number: anything else names the setting."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{setting}={value!r} is not a positive number")


def usage_stats(per_document: Mapping[str, Mapping[str, Mapping[str, Any]]], kept_items: int, *,
                uses_a_model: bool, per_server: Mapping[str, Mapping[str, Any]] | None = None,
                counted: Mapping[str, Any] | None = None, seconds: float | None = None,
                prices: Prices | None = None,
                from_cache: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None) -> dict[str, Any]:
    """The figures a summary or a card shows: totals, per task, per server, per kept item,
    the replies counted with a tokenizer ({requests, tokenizer}), with a price the cost,
    and the replies taken from the generation cache ({document: {task: counts}} as they
    cost when they were asked: paid then, not now)."""
    per_task = usage_totals(per_document)
    total = add_counts({}, {})
    for counts in per_task.values():
        add_counts(total, counts)
    stats: dict[str, Any] = {"uses_a_model": uses_a_model, **total, "per_task": per_task,
                             "per_server": {url: dict(counts) for url, counts in (per_server or {}).items()},
                             "kept_items": kept_items, "seconds": seconds}
    if counted and counted.get("requests"):
        stats["counted_with_tokenizer"] = dict(counted)
    if kept_items:
        stats["tokens_per_kept_item"] = round((total["prompt_tokens"] + total["completion_tokens"]) / kept_items, 1)
        stats["requests_per_kept_item"] = round(total["requests"] / kept_items, 2)
    cached = add_counts({}, {})
    for counts in usage_totals(from_cache or {}).values():
        add_counts(cached, counts)
    if cached["requests"]:
        stats["from_cache"] = cached
    if prices is not None and prices.any:
        stats["prices"] = prices.describe()
        stats["cost"] = prices.cost(total["prompt_tokens"], total["completion_tokens"], seconds)
    return stats


def usage_lines(stats: Mapping[str, Any]) -> list[str]:
    """The lines `make run`'s summary and the card share (plain text)."""
    if not stats.get("uses_a_model"):
        return [NO_MODEL_REQUESTS]
    cached = stats.get("from_cache")
    was = (f"{cached['requests']} replies from the generation cache, {cached['prompt_tokens']} prompt + "
           f"{cached['completion_tokens']} completion tokens when they were asked" if cached else "")
    if not stats["requests"]:
        return ["no model requests this time: every reply came from the generation cache"
                + (f" ({cached['requests']} replies, {cached['prompt_tokens']} prompt + "
                   f"{cached['completion_tokens']} completion tokens when they were asked)" if cached else "")]
    lines = [f"{stats['requests']} requests, {stats['prompt_tokens']} prompt + "
             f"{stats['completion_tokens']} completion tokens"]
    if stats.get("kept_items"):
        lines.append(f"per kept item ({stats['kept_items']}): {stats['tokens_per_kept_item']:g} tokens, "
                     f"{stats['requests_per_kept_item']:g} requests")
    else:
        lines.append("no item kept: nothing to divide the cost by")
    if was:
        lines.append(f"and {was} (not paid now)")
    if len(stats["per_task"]) > 1:
        lines.append("per task: " + "; ".join(
            f"{task} {c['requests']} requests, {c['prompt_tokens']} + {c['completion_tokens']} tokens"
            for task, c in sorted(stats["per_task"].items())))
    if len(stats["per_server"]) > 1:
        lines.append("per server: " + "; ".join(
            f"{url} {c['requests']} requests, {c['prompt_tokens']} + {c['completion_tokens']} tokens"
            for url, c in sorted(stats["per_server"].items())))
    if stats.get("seconds"):
        lines.append(f"generation: {stats['seconds']:.1f} s, "
                     f"{stats['completion_tokens'] / stats['seconds']:.0f} completion tokens/s")
    if counted := stats.get("counted_with_tokenizer"):
        lines.append(f"server sent no usage for {counted['requests']} requests; counted with {counted['tokenizer']}")
    if "prices" in stats:
        if stats.get("cost") is None:
            lines.append(f"cost: not known (a price per hour needs the generation time; prices: {stats['prices']})")
        else:
            lines.append(f"cost: {stats['cost']:.4g} (at {stats['prices']})")
    return lines


def usage_section(stats: Mapping[str, Any] | None) -> str:
    """The dataset card's "Model usage" section (Markdown): what generating the dataset's
    items asked of the model. Empty without stats."""
    if not stats:
        return ""
    lines = ["## Model usage", ""]
    if not stats.get("uses_a_model"):
        return "\n".join([*lines, NO_MODEL_REQUESTS[0].upper() + NO_MODEL_REQUESTS[1:] + ".", ""])
    lines += ["What the generation model was asked for the documents in this dataset, as the servers "
              "reported it (replies taken from the generation cache are counted in the run that asked for "
              "them; retries count).", ""]
    lines += ["| task | requests | prompt tokens | completion tokens |", "| --- | ---: | ---: | ---: |"]
    for task, counts in sorted(stats["per_task"].items()):
        lines.append(f"| {task} | {counts['requests']} | {counts['prompt_tokens']} | {counts['completion_tokens']} |")
    lines.append(f"| **total** | {stats['requests']} | {stats['prompt_tokens']} | {stats['completion_tokens']} |")
    lines.append("")
    lines += [f"- {line}" for line in usage_lines(stats)[1:]]
    lines.append("")
    return "\n".join(lines)


def merge_per_server(parts: Iterable[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, int]]:
    """{url: counts} summed over several runs' per-server counts."""
    merged: dict[str, dict[str, int]] = {}
    for part in parts:
        for url, counts in part.items():
            add_counts(merged.setdefault(url, {}), counts)
    return merged
