"""Which dataset versions and stored shards to delete, keeping the newest versions.

Every build that changes a row writes a version folder (hard links, so little space) and
the changed buckets' shards into `<export_dir>/shards/`; the store keeps every shard any
version ever listed. Pruning deletes the version folders older than the newest `keep`,
never the published one (LATEST) nor any the caller names, then the stored shards no
remaining version lists and the next build does not build on (`also_keep`: the dataset's
current shards, which a build links without writing again).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from synth_assets.core.shards import MANIFEST_FILE, SHARD_STORE, read_manifest, shards_of


@dataclass
class Pruned:
    versions_deleted: list[str] = field(default_factory=list)
    versions_kept: list[str] = field(default_factory=list)
    files_deleted: int = 0
    bytes_freed: int = 0


def version_folders(export_dir: Path) -> list[Path]:
    """The export folder's versions (folders with a manifest), oldest first."""
    found = [p for p in export_dir.iterdir()
             if p.is_dir() and not p.name.startswith(".") and p.name != SHARD_STORE and (p / MANIFEST_FILE).is_file()]
    return sorted(found, key=lambda p: ((p / MANIFEST_FILE).stat().st_mtime, p.name))


def _freed(path: Path) -> int:
    # A hard-linked file frees its space only with its last name.
    stat = path.stat()
    return stat.st_size if stat.st_nlink == 1 else 0


def prune_versions(export_dir: Path, keep: int, protect: set[str], also_keep: set[str],
                   dry_run: bool = False) -> Pruned:
    """Delete all but the `keep` newest versions (and those in `protect`), then every
    stored shard file that neither a remaining version nor `also_keep` (shard paths,
    as in a manifest) lists. With `dry_run`, only say what would go."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the newest version is the one the next build starts from), not {keep}")
    pruned = Pruned()
    if not export_dir.is_dir():
        return pruned
    versions = version_folders(export_dir)
    kept = {p.name for p in versions[-keep:]} | protect
    for folder in versions:
        if folder.name in kept:
            pruned.versions_kept.append(folder.name)
            continue
        pruned.versions_deleted.append(folder.name)
        if dry_run:  # its files linked from the store free nothing until the store's go too
            pruned.bytes_freed += sum(_freed(f) for f in folder.rglob("*") if f.is_file())
            continue
        # Renamed out of sight first (atomic): a half-deleted folder never looks like a version.
        doomed = Path(tempfile.mkdtemp(prefix=f".pruning-{folder.name}-", dir=export_dir))
        os.replace(folder, doomed / folder.name)
        pruned.bytes_freed += sum(_freed(f) for f in doomed.rglob("*") if f.is_file())
        shutil.rmtree(doomed)
    listed = set(also_keep)
    for name in pruned.versions_kept:
        for shard in shards_of(read_manifest(export_dir / name)):
            listed.update(shard.files())
    store = export_dir / SHARD_STORE
    for file in sorted(store.rglob("*")) if store.is_dir() else []:
        if file.is_file() and not file.name.startswith(".") and file.relative_to(store).as_posix() not in listed:
            pruned.files_deleted += 1
            if dry_run:
                pruned.bytes_freed += file.stat().st_size
            else:
                pruned.bytes_freed += _freed(file)
                file.unlink()
    return pruned
