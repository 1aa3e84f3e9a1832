"""Where the documents come from."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import dagster as dg

from synth_assets.core.documents import DEFAULT_MAX_FILE_MB, discover_documents

DOCUMENTS_DIR_ENV = "SYNTH_ASSETS_DOCUMENTS_DIR"
CORPUS_SHARD_ENV = "SYNTH_ASSETS_CORPUS_SHARD"
DEFAULT_DOCUMENTS_DIR = "examples/documents"


class DocumentsFolder(dg.ConfigurableResource):
    """The folder of source documents; each supported file becomes one partition."""

    path: str = DEFAULT_DOCUMENTS_DIR
    max_file_mb: float = DEFAULT_MAX_FILE_MB
    # When a file is removed from the folder: "drop" deletes its partition and its rows,
    # so it leaves the next training_dataset; "keep" leaves both as they are.
    on_removed: Literal["drop", "keep"] = "drop"
    # docling's layout models for the standard PDF pipeline, when they are on this machine;
    # without them PDFs take the model-free native pipeline.
    layout_models_dir: str | None = None
    # A corpus shard (docs/DEPLOYMENT.md, "Corpus shards"): only the documents of this
    # sub-folder of `path` are this code location's; their keys still start with it.
    shard: str | None = None

    @property
    def root(self) -> Path:
        return Path(self.path).resolve()

    @property
    def layout_models_path(self) -> Path | None:
        return Path(self.layout_models_dir) if self.layout_models_dir else None

    @property
    def max_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)

    def discover(self) -> dict[str, Path]:
        """Partition key -> file, for every document in the folder."""
        if not self.root.is_dir():
            raise dg.Failure(f"documents folder {self.root} does not exist ({DOCUMENTS_DIR_ENV})")
        if self.shard and not (self.root / self.shard).is_dir():
            raise dg.Failure(f"corpus shard folder {self.root / self.shard} does not exist "
                             f"({CORPUS_SHARD_ENV}={self.shard} names a sub-folder of {DOCUMENTS_DIR_ENV})")
        return discover_documents(self.root, within=self.shard)

    def path_for(self, document_id: str, discovered: Mapping[str, Path] | None = None) -> Path:
        """The file of a registered document. `discovered`: the folder as discover() found
        it once for a step over many documents (a walk per document would make a step's
        cost grow with the square of the folder)."""
        documents = self.discover() if discovered is None else discovered
        if document_id not in documents:
            raise dg.Failure(
                f"document '{document_id}' is registered as a partition but no file in "
                f"{self.root} has that key any more (was it renamed or removed?)"
            )
        return documents[document_id]
