"""What changed in the documents folder since the last look: pure functions.

A folder state maps partition key -> {"sha256", "size", "mtime_ns"}. The SHA-256 of a
file is computed only when its size or modification time moved since the previous
state, so looking at a folder of thousands of unchanged files costs a `stat` each.
A file whose bytes are the same after a touch or a copy-over is not a change: the
content hash decides. A state read back from the database has the modification time
as raw_documents records it (`mtime`, float seconds, `os.stat_result.st_mtime`)
instead of `mtime_ns`: compared as such, so that `make run` over 100,000 unchanged
files does not read every byte of them again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from synth_assets.core.documents import file_sha256

FolderState = dict[str, dict]


@dataclass
class FolderChanges:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def folder_state(
    documents: Mapping[str, Path],
    previous: FolderState | None = None,
    sha256: Callable[[Path], str] = file_sha256,
) -> FolderState:
    """The state of `documents` (key -> file), reusing previous hashes of files whose
    size and mtime have not moved. A file that vanishes or cannot be read between the
    folder scan and the hash is left out (it is seen again on the next look)."""
    previous = previous or {}
    state: FolderState = {}
    for key, path in documents.items():
        try:
            stat = path.stat()
            entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            before = previous.get(key)
            if before and _unchanged(before, stat):
                entry["sha256"] = before["sha256"]
            else:
                entry["sha256"] = sha256(path)
        except OSError:
            continue
        state[key] = entry
    return state


def _unchanged(before: dict, stat) -> bool:
    """Same size and modification time as `before` (in nanoseconds, or, for a state read
    from raw_documents, the float seconds it recorded: equal floats from the same stat)."""
    if before.get("size") != stat.st_size:
        return False
    if before.get("mtime_ns") is not None:
        return before["mtime_ns"] == stat.st_mtime_ns
    return before.get("mtime") is not None and before["mtime"] == stat.st_mtime


def diff_states(previous: FolderState, current: FolderState) -> FolderChanges:
    """Keys added, whose content hash changed, and removed, each sorted."""
    return FolderChanges(
        added=sorted(current.keys() - previous.keys()),
        changed=sorted(k for k in current.keys() & previous.keys() if current[k]["sha256"] != previous[k]["sha256"]),
        removed=sorted(previous.keys() - current.keys()),
    )
