"""Which requests a document's chunks become, for the configured task shares.

With the default shares (qa only) every prose chunk is one request for
`pairs_per_chunk` pairs, exactly as before tasks existed. With a mix, the document's
budget of `pairs_per_chunk x chunks` items is divided by `core.tasks.allocate`, and each
task's items go to chunks spread over the document (`core.tasks.spread`, a different
starting chunk per task), several items per request (`ITEMS_PER_REQUEST`). A multi-hop
request joins its anchor chunk with the chunk(s) sharing the most terms with it
(`core.tasks.pick_partners`), recorded in `link_terms`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

from synth_assets.core.tasks import (
    ITEMS_PER_REQUEST,
    MAX_HOPS,
    MULTI_HOP,
    QA,
    TASKS,
    allocate,
    pick_partners,
    spread,
)
from synth_assets.generation.base import GenerationRequest
from synth_assets.generation.model_free_tasks import MODEL_FREE_TASKS_VERSION
from synth_assets.generation.task_prompts import TASK_PROMPT_VERSIONS


def prompt_version_of(backend, task: str) -> str:
    """The prompt (or template) version a backend's items of `task` were written with."""
    if task == QA:
        return backend.prompt_version
    if backend.generator == "model-free":
        return MODEL_FREE_TASKS_VERSION
    return TASK_PROMPT_VERSIONS[task]


def plan_requests(document_id: str, chunks: list[GenerationRequest], shares: dict[str, float],
                  pairs_per_chunk: int) -> tuple[list[GenerationRequest], dict[str, int], dict[str, str]]:
    """(the requests, the items planned per task, why a task got fewer than its share)."""
    if set(shares) == {QA}:
        return list(chunks), {QA: pairs_per_chunk * len(chunks)}, {}
    counts = allocate(document_id, pairs_per_chunk * len(chunks), shares)
    texts = [chunk.text for chunk in chunks]
    requests: list[GenerationRequest] = []
    planned: dict[str, int] = {}
    shortfalls: dict[str, str] = {}
    for offset, task in enumerate(TASKS):
        wanted = counts.get(task, 0)
        if not wanted or not chunks:
            continue
        per_request = pairs_per_chunk if task == QA else min(pairs_per_chunk, ITEMS_PER_REQUEST[task])
        n_requests = math.ceil(wanted / per_request)
        sizes = [per_request] * (n_requests - 1) + [wanted - per_request * (n_requests - 1)]
        items_of = Counter()
        for index, size in zip(spread(len(chunks), n_requests, offset), sizes):
            items_of[index] += size
        if task != MULTI_HOP:
            requests += [replace(chunks[i], task=task, n_items=n) for i, n in sorted(items_of.items())]
            planned[task] = wanted
            continue
        got = 0
        # An anchor without a partner hands its items to the next chunk that has one.
        carried = 0
        order = sorted(items_of) + [i for i in range(len(chunks)) if i not in items_of]
        for index in order:
            n = items_of.get(index, 0) + carried
            if not n:
                continue
            # Two partners (three chunks) for every third request: joins of three as well as two.
            partners = pick_partners(index, texts, k=MAX_HOPS - 1 if index % 3 == 2 else 1)
            if not partners:
                carried = n
                continue
            carried = 0
            got += n
            requests.append(replace(
                chunks[index], task=task, n_items=n,
                partners=tuple((chunks[j].chunk_id, chunks[j].text) for j, _ in partners),
                link_terms=tuple(dict.fromkeys(term for _, terms in partners for term in terms))))
        planned[task] = got
        if got < wanted:
            shortfalls[task] = (f"{wanted - got} of {wanted} multi_hop items not asked for: "
                                + ("the document has fewer than 3 chunks (neighbours are not joined)"
                                   if len(chunks) < 3 else "no two non-neighbouring chunks share enough terms"))
    return requests, planned, shortfalls
