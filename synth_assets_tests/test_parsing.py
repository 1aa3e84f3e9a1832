"""Tests for synth_assets.core.parsing: every example parses, bad input fails clearly, a file
without text parses to "no text to learn from"."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import zipfile
from pathlib import Path

import pypdfium2
import pytest
from docling_core.types.doc import CoordOrigin, SectionHeaderItem, TextItem

from synth_assets.core.documents import DocumentError
from synth_assets.core.parsing import (
    EMPTY_FILE,
    NO_EXTRACTABLE_TEXT,
    PARSER_NATIVE_PDF,
    ParsedDocument,
    _converter,
    find_layout_models_dir,
    parse_document,
)

EXAMPLES = Path(__file__).parents[1] / "examples" / "documents"

EXPECTED_PARSERS = {
    "2305.03393v1-pg9.pdf": PARSER_NATIVE_PDF,
    "asciidoc_02.asciidoc": "docling-asciidoc",
    "code_and_formula.pdf": PARSER_NATIVE_PDF,
    "lorem_ipsum.docx": "docling-docx",
    "multi_page.pdf": PARSER_NATIVE_PDF,
    "normal_4pages.pdf": PARSER_NATIVE_PDF,
    "powerpoint_sample.pptx": "docling-pptx",
    "table_06.html": "docling-html",
    "wiki.md": "docling-markdown",
    "wiki_duck.html": "docling-html",
    "word_sample.docx": "docling-docx",
}


@pytest.fixture(scope="module")
def parsed() -> dict[str, ParsedDocument]:
    """Each example parsed once for the whole module."""
    return {name: parse_document(EXAMPLES / name) for name in EXPECTED_PARSERS}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARSERS))
def test_every_example_parses(parsed: dict[str, ParsedDocument], name: str) -> None:
    result = parsed[name]
    assert result.parser == EXPECTED_PARSERS[name]
    assert result.markdown.strip()
    assert result.num_text_items > 0
    if name.endswith((".pdf", ".pptx")):
        assert result.num_pages and result.num_pages >= 1
    else:
        assert result.num_pages is None


def test_multi_page_pdf_paragraphs_are_rebuilt(parsed: dict[str, ParsedDocument]) -> None:
    result = parsed["multi_page.pdf"]
    native = _converter(None).convert(EXAMPLES / "multi_page.pdf").document
    n_lines = sum(1 for item, _ in native.iterate_items() if isinstance(item, TextItem))
    items = [item for item, _ in result.document.iterate_items() if isinstance(item, TextItem)]
    assert len(items) < n_lines / 2  # 136 lines became ~50 paragraphs and headings
    assert result.num_pages == 5

    texts = [item.text for item in items]
    # This sentence is split over two lines in the PDF.
    assert any(
        "has evolved through several technological milestones." in t for t in texts
    ), texts[:3]
    headings = {item.text for item in items if isinstance(item, SectionHeaderItem)}
    assert "The Evolution of the Word Processor" in headings
    assert "Pre-Digital Era (19th - Early 20th Century)" in headings
    # Paragraphs are not headings, and every item knows its page and box.
    assert not any(t.startswith("The origins of word processing") for t in headings)
    for item in items:
        assert 1 <= item.prov[0].page_no <= 5
        assert item.prov[0].bbox.coord_origin == CoordOrigin.BOTTOMLEFT
        assert item.prov[0].charspan == (0, len(item.text))
    assert {item.prov[0].page_no for item in items} == {1, 2, 3, 4, 5}


def test_native_pdf_dehyphenates_and_finds_numbered_sections(
    parsed: dict[str, ParsedDocument],
) -> None:
    code = parsed["code_and_formula.pdf"].markdown
    assert "sed diam nonumy eirmod tempor" in code  # "eir-" + "mod" joined
    assert "eir- mod" not in code
    paper = parsed["2305.03393v1-pg9.pdf"].document
    headings = [i.text for i, _ in paper.iterate_items() if isinstance(i, SectionHeaderItem)]
    assert "5.1 Hyper Parameter Optimization" in headings
    assert "5.2 Quantitative Results" in headings
    levels = {i.text: i.level for i, _ in paper.iterate_items() if isinstance(i, SectionHeaderItem)}
    assert levels["5.1 Hyper Parameter Optimization"] == 2


def test_layout_models_dir_from_the_settings(tmp_path: Path) -> None:
    from synth_assets.settings import Settings

    def models_dir(environ: dict) -> str | None:
        return Settings.from_env(environ).resources["documents"].layout_models_dir

    assert models_dir({}) is None
    assert models_dir({"DOCLING_ARTIFACTS_PATH": str(tmp_path / "missing")}) is None
    assert models_dir({"DOCLING_ARTIFACTS_PATH": str(tmp_path)}) == str(tmp_path)
    ours = tmp_path / "ours"
    ours.mkdir()
    both = {"DOCLING_ARTIFACTS_PATH": str(tmp_path), "SYNTH_ASSETS_DOCLING_ARTIFACTS": str(ours)}
    assert models_dir(both) == str(ours)
    assert find_layout_models_dir(["", str(tmp_path / "missing"), str(ours)]) == ours


def test_missing_models_dir_falls_back_to_native_pdf(tmp_path: Path) -> None:
    result = parse_document(EXAMPLES / "code_and_formula.pdf", layout_models_dir=tmp_path / "none")
    assert result.parser == PARSER_NATIVE_PDF


def test_odd_file_name_parses(tmp_path: Path) -> None:
    path = tmp_path / "my 'odd' \"file\" é.md"
    shutil.copy(EXAMPLES / "wiki.md", path)
    assert "International Business Machines" in parse_document(path).markdown


# --- hand-made bad inputs ------------------------------------------------------

_PDF_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def _rc4(key: bytes, data: bytes) -> bytes:
    box, j = list(range(256)), 0
    for i in range(256):
        j = (j + box[i] + key[i % len(key)]) % 256
        box[i], box[j] = box[j], box[i]
    out, i, j = bytearray(), 0, 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + box[i]) % 256
        box[i], box[j] = box[j], box[i]
        out.append(byte ^ box[(box[i] + box[j]) % 256])
    return bytes(out)


def _pdf(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A minimal PDF with a correct cross-reference table."""
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\n" % (len(objects) + 1, trailer)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def _encrypted_pdf(user_password: bytes = b"secret") -> bytes:
    """One-page PDF encrypted with the standard security handler (RC4 40-bit, R2)."""
    file_id, permissions = b"0123456789abcdef", -44
    owner_key = hashlib.md5((b"owner" + _PDF_PAD)[:32]).digest()[:5]
    o_value = _rc4(owner_key, (user_password + _PDF_PAD)[:32])
    key = hashlib.md5(
        (user_password + _PDF_PAD)[:32] + o_value + struct.pack("<i", permissions) + file_id
    ).digest()[:5]
    u_value = _rc4(key, _PDF_PAD)
    content = b"BT /F1 12 Tf 72 720 Td (Hello secret world) Tj ET"
    stream = _rc4(hashlib.md5(key + b"\x04\x00\x00\x00\x00").digest()[:10], content)  # object 4
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>"
            % (o_value.hex().encode(), u_value.hex().encode(), permissions),
        ],
        b"/Encrypt 6 0 R /ID [<%s> <%s>] " % (file_id.hex().encode(), file_id.hex().encode()),
    )


def test_hand_made_encrypted_pdf_is_really_encrypted(tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(_encrypted_pdf())
    pdf = pypdfium2.PdfDocument(path, password="secret")
    try:
        assert "Hello secret world" in pdf[0].get_textpage().get_text_range()
    finally:
        pdf.close()


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _zeros_zip(path: Path, megabytes: int) -> None:
    """A zip holding `megabytes` MB of zeros, written in 1 MB blocks (fast, small)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(megabytes):
                member.write(block)


def _make_bad_input(kind: str, tmp_path: Path) -> Path:
    real_pdf = (EXAMPLES / "multi_page.pdf").read_bytes()
    if kind == "empty":
        path = tmp_path / "empty.pdf"
        path.touch()
    elif kind == "random":
        path = tmp_path / "random bytes.pdf"
        path.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        path = tmp_path / "truncated.pdf"
        path.write_bytes(real_pdf[: int(len(real_pdf) * 0.3)])
    elif kind == "encrypted":
        path = tmp_path / "locked é.pdf"
        path.write_bytes(_encrypted_pdf())
    elif kind == "zero_pages":
        path = tmp_path / "zero-pages.pdf"
        path.write_bytes(
            _pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])
        )
    elif kind == "zip_as_pdf":
        path = tmp_path / "really a zip.pdf"
        _zip(path, {"a.txt": b"hello"})
    elif kind == "zip_bomb":
        path = tmp_path / "bomb.docx"
        _zeros_zip(path, 300)
    elif kind == "dense_zip":
        path = tmp_path / "dense.pptx"
        _zeros_zip(path, 20)
    elif kind == "not_zip":
        path = tmp_path / "not a zip.docx"
        path.write_bytes(b"this is plain text, not a Word file")
    elif kind == "pdf_as_docx":
        path = tmp_path / "pdf_inside.docx"
        path.write_bytes(real_pdf)
    elif kind == "zip_not_docx":
        path = tmp_path / "other.docx"
        _zip(path, {"hello.txt": b"hello world"})
    elif kind == "non_utf8":
        path = tmp_path / "latin1 'notes'.md"
        path.write_bytes(b"\xff\xfe\xfa caf\xe9\n\n# Title\n\nSome text.\n")
    elif kind == "no_text":
        path = tmp_path / "image_only.html"
        path.write_text('<html><body><img src="x.png"></body></html>', encoding="utf-8")
    elif kind == "empty_markdown":
        path = tmp_path / "blank.md"
        path.write_text("\n\n   \n", encoding="utf-8")
    else:
        raise AssertionError(kind)
    return path


BAD_INPUTS = {
    "random": "could not be read as PDF",
    "truncated": "the PDF is damaged or truncated",
    "encrypted": "the PDF is encrypted (password protected)",
    "zero_pages": "the PDF has no pages",
    "zip_as_pdf": "could not be read as PDF",
    "zip_bomb": "refused: the archive would expand to 300 MB",
    "dense_zip": "refused: the archive would expand to 20 MB",
    "not_zip": "could not be read as DOCX: not a zip archive",
    "pdf_as_docx": "could not be read as DOCX: not a zip archive",
    "zip_not_docx": "could not be read as DOCX: the zip archive has no word/document.xml",
    "non_utf8": "is not valid UTF-8 text",
}
# Files that read fine but hold nothing to learn from: a status, not an error.
NO_TEXT_INPUTS = {"empty": EMPTY_FILE, "no_text": NO_EXTRACTABLE_TEXT, "empty_markdown": NO_EXTRACTABLE_TEXT}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_raises_document_error(kind: str, tmp_path: Path) -> None:
    path = _make_bad_input(kind, tmp_path)
    with pytest.raises(DocumentError) as info:
        parse_document(path)
    error = info.value
    assert error.file_name == path.name
    assert str(error).startswith(f"{path.name}: ")
    assert BAD_INPUTS[kind] in error.reason, error.reason
    assert "Traceback" not in error.reason
    if kind in ("zip_bomb", "dense_zip"):
        assert error.reason.endswith("(zip bomb guard)")


@pytest.mark.parametrize("kind", sorted(NO_TEXT_INPUTS))
def test_a_file_without_text_parses_to_no_text(kind: str, tmp_path: Path) -> None:
    result = parse_document(_make_bad_input(kind, tmp_path))
    assert result.no_text == NO_TEXT_INPUTS[kind]
    assert result.num_text_items == 0 and not result.markdown.replace("<!-- image -->", "").strip()


def test_a_file_with_text_has_no_no_text_reason(parsed: dict[str, ParsedDocument]) -> None:
    assert {name: result.no_text for name, result in parsed.items() if result.no_text} == {}


def test_zero_page_pdf_is_recognised_after_an_encrypted_one(tmp_path: Path) -> None:
    """PDFium leaves its last error code stale for page-less PDFs; it must not leak."""
    for kind, expected in [("encrypted", "encrypted"), ("zero_pages", "no pages")]:
        with pytest.raises(DocumentError, match=expected):
            parse_document(_make_bad_input(kind, tmp_path))


def test_models_dir_without_models_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found in artifacts_path"):
        parse_document(EXAMPLES / "multi_page.pdf", layout_models_dir=tmp_path)
