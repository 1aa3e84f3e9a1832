"""Finding, naming and vetting the input documents.

Pure Python (no Dagster import) so it can be unit-tested on its own. The Dagster
layer uses `discover_documents` to register one dynamic partition per document,
`file_fingerprint` to notice changed files, and `check_document_file` before any
expensive parsing so that a bad file fails fast with a message naming the file.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

# Lower-case file extension -> format name. Only formats docling reads without
# OCR or downloads; everything else is skipped at discovery.
SUPPORTED_FORMATS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".pptx": "pptx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".adoc": "asciidoc",
    ".asciidoc": "asciidoc",
}

# Upper bound on a single input file; the Dagster layer can override it with
# the SYNTH_ASSETS_MAX_FILE_MB environment variable.
DEFAULT_MAX_FILE_MB = 50

# Partition keys are shown in the Dagster UI and used in run tags; keep them short.
MAX_KEY_LENGTH = 120

# Licence/readme files sit next to example documents but are not documents to ingest.
_SKIPPED_NAME_PREFIXES = ("LICENSE", "README")

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_DOT_RUNS = re.compile(r"\.{2,}")  # ".." and "..." (the latter is invalid in Dagster keys)
_UNDERSCORE_RUNS = re.compile(r"_{2,}")


class DocumentError(Exception):
    """A document that cannot be used, with the file name and a human reason.

    Every bad-input failure raises this, so the message shown in Dagster always
    says which file is at fault and why, never a bare library stack trace.
    """

    def __init__(self, file_name: str, reason: str) -> None:
        super().__init__(f"{file_name}: {reason}")
        self.file_name = file_name
        self.reason = reason


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _sanitise_part(part: str) -> str:
    """Make one path component safe: only letters, digits, '.', '-', '_'."""
    part = _UNSAFE_CHARS.sub("_", part)
    part = _DOT_RUNS.sub("_", part)
    # A leading dot would make a hidden-looking or relative-looking key.
    part = re.sub(r"^\.", "_", part)
    return _UNDERSCORE_RUNS.sub("_", part)


def document_key(relative_path: str) -> str:
    """Stable, readable Dagster partition key for a document.

    The key is the path relative to the documents folder with path separators
    turned into ``__`` and every character other than letters, digits, ``.``,
    ``-`` and ``_`` turned into ``_``. Whenever that changes anything (including
    the separator mapping) or the key would exceed 120 characters, ``-`` plus
    the first 8 hex digits of sha1(relative_path) is appended, so two paths that
    sanitise alike still get different keys. Keys never contain ``/``, ``..``
    or ``...`` and never start with ``.``.
    """
    if not relative_path or not relative_path.strip("/\\"):
        raise ValueError("document_key needs a non-empty relative path")
    parts = [p for p in re.split(r"[/\\]", relative_path) if p and p != "."]
    key = "__".join(_sanitise_part(p) for p in parts)
    if key == relative_path and len(key) <= MAX_KEY_LENGTH:
        return key
    suffix = "-" + _short_hash(relative_path)
    return key[: MAX_KEY_LENGTH - len(suffix)] + suffix


def _is_skipped_name(name: str) -> bool:
    # Case-sensitive on purpose: "license-agreement.pdf" is a document to ingest.
    # "~$report.docx" is the lock file Word and PowerPoint keep beside an open document.
    return name.startswith((".", "~$")) or name.startswith(_SKIPPED_NAME_PREFIXES)


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _walk(directory: Path, prefix: str, regular: list[tuple[str, Path]], links: list[tuple[str, Path]]) -> None:
    """The candidate files under `directory` (relative paths starting with `prefix`), in
    os.walk's top-down order: a directory's files by name, then its sub-directories by
    name; hidden directories and linked directories are not entered. With os.scandir,
    whose entries know their type without a `stat` each: 20 us a file with pathlib and a
    `stat` per file, 2 s a look at 100,000 documents, against a few us (issue 29)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError:  # vanished or unreadable meanwhile (os.walk skips it too)
        return
    subdirectories = []
    for entry in entries:
        try:
            is_directory = entry.is_dir()
        except OSError:
            is_directory = False
        if is_directory:
            if not entry.name.startswith(".") and not entry.is_symlink():
                subdirectories.append(entry)
            continue
        name = entry.name
        if _is_skipped_name(name) or os.path.splitext(name)[1].lower() not in SUPPORTED_FORMATS:
            continue
        if entry.is_symlink():
            links.append((prefix + name, directory / name))
        elif entry.is_file(follow_symlinks=False):
            regular.append((prefix + name, directory / name))  # parses the name only, not the path
    for entry in subdirectories:
        _walk(directory / entry.name, f"{prefix}{entry.name}/", regular, links)


def discover_documents(folder: Path, within: str | None = None) -> dict[str, Path]:
    """Map partition key -> absolute file path for every document under `folder`, or only
    under its sub-folder `within` (a corpus shard), keyed by the path from `folder` either
    way, so a document keeps its key whether the corpus is sharded or not.

    Walks the folder recursively in sorted order and skips hidden files and
    directories, Office lock files (``~$*``), ``LICENSE*``/``README*`` files and
    unsupported extensions.
    Symbolic links are never followed out of the folder: a file link is kept
    only if its target resolves inside ``folder`` and that target is not already
    listed (so one file is not ingested twice); the returned path is then the
    resolved target. Linked directories are not descended into.
    """
    root = folder.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"documents folder not found: {folder}")

    regular: list[tuple[str, Path]] = []
    links: list[tuple[str, Path]] = []
    if within:
        root = (root / within).resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"corpus shard folder not found: {folder / within}")
    _walk(root, f"{within.strip('/')}/" if within else "", regular, links)

    found: dict[str, Path] = {relative: path for relative, path in regular}
    seen = set(found.values()) if links else set()
    for relative, link in links:
        target = link.resolve()
        if target.is_file() and _is_within(target, root) and target not in seen:
            found[relative] = target
            seen.add(target)

    return {document_key(rel): found[rel] for rel in sorted(found)}


def file_fingerprint(path: Path, folder: Path) -> dict:
    """Identity of a file's current content, to detect changes between runs.

    Returns relative_path, file_name, format, size_bytes, sha256 and modified_at
    (the mtime as a float). The hash is computed in 1 MiB blocks so large files
    are not loaded into memory.
    """
    stat = path.stat()
    try:
        relative = path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:  # a path outside the folder: identify it by name only
        relative = path.name
    return {
        "relative_path": relative,
        "file_name": path.name,
        "format": SUPPORTED_FORMATS.get(path.suffix.lower()),
        "size_bytes": stat.st_size,
        "sha256": file_sha256(path),
        "modified_at": stat.st_mtime,
    }


def file_sha256(path: Path) -> str:
    """SHA-256 of the file, read in 1 MiB blocks so large files are not loaded whole."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / (1024 * 1024):.1f}"


def check_document_file(path: Path, max_bytes: int) -> None:
    """Cheap checks before parsing; raises DocumentError naming the problem.

    Rejects a missing file, a symbolic link (discovery already resolved the
    links it accepts, so a link here was swapped in or passed by hand), a file
    over `max_bytes` and an unsupported extension. An empty file passes: it is a
    document with no text to learn from (see parsing.parse_document), not a bad one.
    """
    name = path.name
    if path.is_symlink():
        raise DocumentError(name, "is a symbolic link; only regular files are read")
    if not path.exists():
        raise DocumentError(name, "the file does not exist")
    if not path.is_file():
        raise DocumentError(name, "is not a regular file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_FORMATS:
        supported = ", ".join(sorted(SUPPORTED_FORMATS))
        raise DocumentError(name, f"unsupported format '{suffix or name}'; supported: {supported}")
    size = path.stat().st_size
    if size > max_bytes:
        raise DocumentError(
            name,
            f"the file is {_mb(size)} MB, over the limit of {_mb(max_bytes)} MB "
            "(SYNTH_ASSETS_MAX_FILE_MB)",
        )
