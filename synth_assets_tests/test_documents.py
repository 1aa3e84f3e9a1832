"""Tests for synth_assets.core.documents: keys, discovery, fingerprints, checks."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from synth_assets.core.documents import (
    DEFAULT_MAX_FILE_MB,
    SUPPORTED_FORMATS,
    DocumentError,
    check_document_file,
    discover_documents,
    document_key,
    file_fingerprint,
)

EXAMPLES = Path(__file__).parents[1] / "examples" / "documents"
EXAMPLE_NAMES = sorted(
    p.name for p in EXAMPLES.iterdir() if p.is_file() and not p.name.startswith("LICENSE")
)

NASTY_NAMES = [
    "../../etc/passwd",
    "a b'c\"d é.pdf",
    "x" * 300 + ".pdf",
    "sub/dir/file.pdf",
    ".hidden.pdf",
    "a...b.pdf",
    "..",
    "./report.pdf",
    "日本語の文書.pdf",
    "con,ma[1]|pipe.pdf",
    "C:\\windows\\x.pdf",
    "tab\tnew\nline.pdf",
    "a_b.pdf",
    "a b.pdf",
    "a?b.pdf",
    "dir/" + "y" * 200 + "/z.md",
]


@pytest.mark.parametrize("name", NASTY_NAMES)
def test_document_key_is_safe_and_stable(name: str) -> None:
    key = document_key(name)
    assert key == document_key(name)
    assert 0 < len(key) <= 120
    assert re.fullmatch(r"[A-Za-z0-9._-]+", key), key
    assert not key.startswith(".")
    assert ".." not in key and "/" not in key


def test_document_key_keeps_clean_names_readable() -> None:
    assert document_key("report.pdf") == "report.pdf"
    assert document_key("2305.03393v1-pg9.pdf") == "2305.03393v1-pg9.pdf"
    nested = document_key("sub/dir/file.pdf")
    assert nested.startswith("sub__dir__file.pdf-") and len(nested) == len("sub__dir__file.pdf") + 9


def test_document_keys_never_collide() -> None:
    names = NASTY_NAMES + ["a-b.pdf", "a b .pdf", "sub__dir__file.pdf", "x" * 301 + ".pdf"]
    keys = [document_key(n) for n in names]
    assert len(set(keys)) == len(names)


def test_document_key_rejects_empty_path() -> None:
    with pytest.raises(ValueError):
        document_key("")


def test_discover_examples_finds_the_eleven_documents() -> None:
    found = discover_documents(EXAMPLES)
    assert list(found) == EXAMPLE_NAMES  # clean names are their own keys, sorted
    assert len(found) == 11
    assert all(p.is_absolute() and p.is_file() for p in found.values())


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A documents folder with junk, hidden files and symlinks in and out."""
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / ".drafts").mkdir()
    shutil.copy(EXAMPLES / "wiki.md", folder / "b.md")
    shutil.copy(EXAMPLES / "multi_page.pdf", folder / "sub" / "a.pdf")
    (folder / "my 'odd' \"file\" é.md").write_text("# Title\n\nSome text.\n", encoding="utf-8")
    (folder / "UPPER.MD").write_text("# Upper\n", encoding="utf-8")
    (folder / "license-agreement.md").write_text("# Terms\n", encoding="utf-8")
    for junk in [".hidden.md", ".git/config.md", "LICENSE.md", "README.md", "data.xyz", "image.png"]:
        (folder / junk).write_text("junk", encoding="utf-8")
    (folder / ".drafts" / "draft.md").write_text("# Draft\n", encoding="utf-8")

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n", encoding="utf-8")
    (folder / "escape.md").symlink_to(outside / "secret.md")
    (folder / "linked_dir").symlink_to(outside, target_is_directory=True)
    (folder / "dup.md").symlink_to(folder / "b.md")  # same file as b.md
    (folder / "alias.md").symlink_to(folder / ".drafts" / "draft.md")  # inside, not yet listed
    (folder / "dangling.md").symlink_to(folder / "missing.md")
    return folder


def test_discover_skips_junk_hidden_and_outside_links(tree: Path) -> None:
    found = discover_documents(tree)
    names = {key: path.relative_to(tree.resolve()).as_posix() for key, path in found.items()}
    assert sorted(names.values()) == sorted(
        [
            "b.md",
            "sub/a.pdf",
            "my 'odd' \"file\" é.md",
            "UPPER.MD",
            ".drafts/draft.md",
            "license-agreement.md",
        ]
    )
    assert "b.md" in found and "UPPER.MD" in found
    assert found["alias.md"] == (tree / ".drafts" / "draft.md").resolve()
    # Nothing outside the folder, whether through a file or a directory link.
    assert all(p.resolve().is_relative_to(tree.resolve()) for p in found.values())
    odd_key = document_key("my 'odd' \"file\" é.md")
    assert found[odd_key].name == "my 'odd' \"file\" é.md"


def test_discover_returns_sorted_keys(tree: Path) -> None:
    found = discover_documents(tree)
    relative = [
        "UPPER.MD",
        "alias.md",
        "b.md",
        "license-agreement.md",
        "my 'odd' \"file\" é.md",
        "sub/a.pdf",
    ]
    assert list(found) == [document_key(r) for r in sorted(relative)]


def test_discover_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        discover_documents(tmp_path / "nope")


def test_file_fingerprint(tree: Path) -> None:
    path = tree / "sub" / "a.pdf"
    fp = file_fingerprint(path, tree)
    assert fp["relative_path"] == "sub/a.pdf"
    assert fp["file_name"] == "a.pdf"
    assert fp["format"] == "pdf"
    assert fp["size_bytes"] == path.stat().st_size
    assert fp["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert isinstance(fp["modified_at"], float)

    md = tree / "b.md"
    before = file_fingerprint(md, tree)["sha256"]
    md.write_text("changed", encoding="utf-8")
    assert file_fingerprint(md, tree)["sha256"] != before


def test_check_document_file_accepts_a_good_file() -> None:
    check_document_file(EXAMPLES / "wiki.md", DEFAULT_MAX_FILE_MB * 1024 * 1024)


def test_check_document_file_errors(tmp_path: Path) -> None:
    limit = 1024 * 1024

    def reason(path: Path, max_bytes: int = limit) -> str:
        with pytest.raises(DocumentError) as info:
            check_document_file(path, max_bytes)
        assert info.value.file_name == path.name
        assert str(info.value) == f"{path.name}: {info.value.reason}"
        return info.value.reason

    assert "does not exist" in reason(tmp_path / "missing.pdf")

    empty = tmp_path / "empty.pdf"
    empty.touch()
    check_document_file(empty, limit)  # no text to learn from, not a bad file (test_parsing.py)

    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-" + bytes(3 * 1024 * 1024))
    message = reason(big)
    assert "3.0 MB, over the limit of 1.0 MB" in message and "SYNTH_ASSETS_MAX_FILE_MB" in message

    odd = tmp_path / "notes.xyz"
    odd.write_text("text", encoding="utf-8")
    message = reason(odd)
    assert message.startswith("unsupported format '.xyz'; supported:")
    assert all(ext in message for ext in SUPPORTED_FORMATS)

    link = tmp_path / "link.md"
    link.symlink_to(EXAMPLES / "wiki.md")
    assert "symbolic link" in reason(link)
