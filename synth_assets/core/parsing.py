"""Turning one document file into a DoclingDocument, offline.

PDFs go through docling's model-free native pipeline by default (no layout model
to download), whose one-item-per-text-line output is rebuilt here into
paragraphs and section headers. When layout models are available locally
(`find_layout_models_dir`), docling's standard PDF pipeline is used instead.
Other formats use docling's own backends.

Every bad input ends in `DocumentError(file name, human reason)`, never a bare
docling stack trace: the checks that can be done cheaply (zip bombs, encrypted
or page-less PDFs, non-UTF-8 Markdown) run before docling sees the file. A file
that reads fine but holds no text (empty, images only, empty slides) is not bad
input: it parses to a document with `no_text` saying why there is nothing to
learn from.
"""

from __future__ import annotations

import logging
import re
import statistics
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docling_core.types.doc import (
    BoundingBox,
    DocItemLabel,
    DoclingDocument,
    ProvenanceItem,
    TableItem,
    TextItem,
)

from synth_assets.core.documents import SUPPORTED_FORMATS, DocumentError

if TYPE_CHECKING:
    from docling.document_converter import DocumentConverter

_log = logging.getLogger(__name__)


PARSER_STANDARD_PDF = "docling-standard-pdf"
PARSER_NATIVE_PDF = "docling-native-pdf+paragraphs"

# Zip bomb guard for DOCX/PPTX, checked on the central directory only.
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024
MAX_COMPRESSION_RATIO = 100
# Below this expanded size a high ratio is harmless (tiny, repetitive XML parts
# legitimately compress more than 100x), so the ratio rule only applies above it.
RATIO_CHECK_MIN_BYTES = 10 * 1024 * 1024

# Paragraph rebuilding for the native PDF pipeline (all relative to the median
# text line height of the document, so they work at any font size).
MAX_LINE_GAP = 0.8  # a larger vertical gap between two lines starts a new block
SHORT_LINE_MARGIN = 3.0  # a line ending this far before the block's right edge is short
MAX_HEADING_WORDS = 12

_BULLETS = "•●○◦▪▫■□‣⁃∙·∞–—-*➢➤►▶✓✔"
# Section numbers have small parts ("2.1", "10.3.2"); "2020.1.1." is a date.
_SECTION_NUMBER = re.compile(r"^(\d{1,2}(?:\.\d{1,2})*)\.?\s+\S")
# Stricter: "5.1 Method", "2.3. Data", "4 Results" but not the list item "1. Buy milk".
_HEADING_NUMBER = re.compile(r"^(?:\d{1,2}(?:\.\d{1,2})+\.?|\d{1,2})\s+\S")
_CAPTION = re.compile(r"^(?:Listing|Figure|Fig\.|Table|Algorithm|Chart)\s+\d", re.IGNORECASE)
# Page numbers sit in the top or bottom margin of a page, this fraction of its height.
PAGE_MARGIN = 0.15
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")

# docling logs every conversion step at INFO; keep its warnings and errors.
for _name in ("docling", "docling_core", "docling_parse"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass
class ParsedDocument:
    """A parsed document and what the pipeline needs to know about it."""

    document: DoclingDocument
    markdown: str
    parser: str  # e.g. "docling-docx", "docling-native-pdf+paragraphs"
    num_pages: int | None  # None for formats without pages (HTML, Markdown, ...)
    num_text_items: int  # items carrying text (paragraphs, headings, tables, ...)
    no_text: str | None = None  # why there is no text to learn from, None when there is text


# A document that parsed but holds nothing to learn from ends with this status (not
# failed): "no text to learn from: <why>", zero chunks and zero pairs.
NO_TEXT = "no text to learn from"
EMPTY_FILE = "the file is empty (0 bytes)"
NO_EXTRACTABLE_TEXT = "no text could be extracted (scanned pages, images only or empty slides)"


def find_layout_models_dir(candidates: Iterable[str]) -> Path | None:
    """Local docling model folder for the standard (layout model) PDF pipeline: the
    first candidate naming an existing directory (the caller passes the settings,
    SYNTH_ASSETS_DOCLING_ARTIFACTS then docling's own DOCLING_ARTIFACTS_PATH). The
    folder must already hold the models (e.g. made with `docling-tools models
    download` on a machine with network); nothing is ever downloaded here. None when
    no candidate names a directory: PDFs then use the model-free native pipeline.
    """
    for value in candidates:
        value = (value or "").strip()
        if value and Path(value).expanduser().is_dir():
            return Path(value).expanduser()
    return None


@lru_cache(maxsize=4)
def _converter(layout_models_dir: Path | None) -> DocumentConverter:
    """Build (once per models folder) a converter for the supported formats.

    docling is imported here, not at module import, because it takes seconds
    and the Dagster code location should load fast.
    """
    from docling.datamodel.base_models import InputFormat
    from docling.datamodel.pipeline_options import (
        NativePdfPipelineOptions,
        PdfPipelineOptions,
    )
    from docling.document_converter import (
        DocumentConverter,
        NativePdfFormatOption,
        PdfFormatOption,
    )

    if layout_models_dir is not None:
        pdf_option: Any = PdfFormatOption(
            pipeline_options=PdfPipelineOptions(artifacts_path=layout_models_dir, do_ocr=False)
        )
    else:
        pdf_option = NativePdfFormatOption(pipeline_options=NativePdfPipelineOptions())
    converter = DocumentConverter(
        allowed_formats=[_input_format(f) for f in sorted(set(SUPPORTED_FORMATS.values()))],
        format_options={InputFormat.PDF: pdf_option},
    )
    if layout_models_dir is not None:
        # Load the models now so a bad models folder is reported as a
        # configuration problem, not blamed on the first PDF parsed.
        converter.initialize_pipeline(InputFormat.PDF)
    return converter


def _input_format(fmt: str) -> Any:
    from docling.datamodel.base_models import InputFormat

    return {
        "pdf": InputFormat.PDF,
        "docx": InputFormat.DOCX,
        "pptx": InputFormat.PPTX,
        "html": InputFormat.HTML,
        "markdown": InputFormat.MD,
        "asciidoc": InputFormat.ASCIIDOC,
    }[fmt]


def parse_document(path: Path, *, layout_models_dir: Path | None = None) -> ParsedDocument:
    """Parse one document file; raise DocumentError for any bad input. A file without
    text (empty, images only) is not bad input: its result says so in `no_text`.

    Call `check_document_file` first for the size limit; this function repeats
    only the checks it needs to give a sensible error. PDFs use docling's
    standard pipeline when `layout_models_dir` is an existing folder (a folder
    without the models raises FileNotFoundError: a configuration problem, not
    the document's), else the native pipeline plus `rebuild_paragraphs`.
    """
    name = path.name
    fmt = SUPPORTED_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DocumentError(name, f"unsupported format '{path.suffix}'")
    if not path.is_file():
        raise DocumentError(name, "the file does not exist")
    if path.stat().st_size == 0:
        return ParsedDocument(document=DoclingDocument(name=path.stem), markdown="", parser="none (empty file)",
                              num_pages=None, num_text_items=0, no_text=EMPTY_FILE)

    if fmt == "pdf":
        _check_pdf(path)
    elif fmt in ("docx", "pptx"):
        _check_zip(path, fmt)
    elif fmt in ("markdown", "asciidoc"):
        _check_utf8(path)

    use_layout = fmt == "pdf" and layout_models_dir is not None and layout_models_dir.is_dir()
    converter = _converter(layout_models_dir if use_layout else None)
    result = _convert(converter, path, fmt)
    document = result.document

    if fmt == "pdf":
        if use_layout:
            parser = PARSER_STANDARD_PDF
        else:
            parser = PARSER_NATIVE_PDF
            document = rebuild_paragraphs(document)
        num_pages: int | None = len(document.pages)
        if num_pages == 0:
            raise DocumentError(name, "the PDF has no pages")
    else:
        parser = f"docling-{fmt}"
        num_pages = len(document.pages) or None

    num_text_items = count_text_items(document)
    return ParsedDocument(
        document=document,
        markdown=document.export_to_markdown(),
        parser=parser,
        num_pages=num_pages,
        num_text_items=num_text_items,
        no_text=None if num_text_items else NO_EXTRACTABLE_TEXT,
    )


def _convert(converter: DocumentConverter, path: Path, fmt: str) -> Any:
    """Run docling and translate its failures into DocumentError."""
    from docling.datamodel.base_models import ConversionStatus

    name, label = path.name, fmt.upper()
    try:
        result = converter.convert(path, raises_on_error=False)
    except Exception as exc:  # docling raises assorted errors for unreadable input
        raise DocumentError(name, f"could not be read as {label}: {_short(exc)}") from exc

    errors = "; ".join(e.error_message for e in result.errors) or "no details from docling"
    if result.input.format != _input_format(fmt):
        detected = result.input.format.value if result.input.format else "unknown"
        raise DocumentError(name, f"could not be read as {label}: the content looks like {detected}")
    if result.status not in (ConversionStatus.SUCCESS, ConversionStatus.PARTIAL_SUCCESS):
        if fmt == "pdf":
            raise DocumentError(name, f"the PDF is damaged or truncated: {_short(errors)}")
        raise DocumentError(name, f"could not be read as {label}: {_short(errors)}")
    if result.status == ConversionStatus.PARTIAL_SUCCESS:
        # Keep what was readable (e.g. the good pages of a damaged PDF), but say so.
        _log.warning("%s was only partly converted: %s", name, _short(errors))
    return result


def _short(message: object, limit: int = 300) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_pdf(path: Path) -> None:
    """Detect non-PDFs, encrypted, damaged and page-less PDFs with PDFium.

    docling reports all of these as a generic "could not parse"; PDFium's
    error codes tell them apart.
    """
    import pypdfium2
    import pypdfium2.raw as pdfium_c

    name = path.name
    with path.open("rb") as handle:
        head = handle.read(1024)
    if b"%PDF-" not in head:
        raise DocumentError(name, "could not be read as PDF: the file has no PDF header")
    try:
        pdf = pypdfium2.PdfDocument(path)
    except pypdfium2.PdfiumError as exc:
        # PDFium refuses a PDF without pages but sets no error code for it, so
        # err_code is then left over from an earlier failure: ask docling-parse.
        if _docling_parse_page_count(path) == 0:
            raise DocumentError(name, "the PDF has no pages") from exc
        code = exc.err_code
        if code == pdfium_c.FPDF_ERR_PASSWORD:
            raise DocumentError(name, "the PDF is encrypted (password protected)") from exc
        if code == pdfium_c.FPDF_ERR_SECURITY:
            reason = "the PDF is encrypted with an unsupported security handler"
            raise DocumentError(name, reason) from exc
        raise DocumentError(name, f"the PDF is damaged or truncated: {exc}") from exc
    try:
        if len(pdf) == 0:
            raise DocumentError(name, "the PDF has no pages")
    finally:
        pdf.close()


def _docling_parse_page_count(path: Path) -> int | None:
    """Page count according to docling-parse (docling's PDF parser), None if unreadable."""
    from docling_parse.pdf_parser import DoclingPdfParser

    try:
        pdf = DoclingPdfParser(loglevel="fatal").load(path_or_stream=path)
    except Exception:
        return None
    try:
        return pdf.number_of_pages()
    finally:
        pdf.unload()


# The part every Office Open XML file of the format has (ECMA-376 package layout).
_OFFICE_MAIN_PART = {"docx": "word/document.xml", "pptx": "ppt/presentation.xml"}


def _check_zip(path: Path, fmt: str) -> None:
    """Refuse non-zip and zip-bomb DOCX/PPTX before docling expands them.

    Only the central directory is read; nothing is decompressed.
    """
    name, label = path.name, fmt.upper()
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DocumentError(name, f"could not be read as {label}: not a zip archive") from exc
    expanded = sum(m.file_size for m in members)
    compressed = sum(m.compress_size for m in members) or 1
    too_big = expanded > MAX_UNZIPPED_BYTES
    too_dense = expanded > RATIO_CHECK_MIN_BYTES and expanded / compressed > MAX_COMPRESSION_RATIO
    if too_big or too_dense:
        raise DocumentError(
            name,
            f"refused: the archive would expand to {expanded / (1024 * 1024):.0f} MB "
            f"(compression ratio {expanded / compressed:.0f}:1) (zip bomb guard)",
        )
    main_part = _OFFICE_MAIN_PART.get(fmt)
    if main_part and main_part not in {m.filename for m in members}:
        raise DocumentError(
            name, f"could not be read as {label}: the zip archive has no {main_part}, so it is not a {label} file"
        )


def _check_utf8(path: Path) -> None:
    """Markdown and AsciiDoc must be UTF-8 (a UTF-8 byte order mark is fine).

    Guessing another encoding produces mojibake that would silently end up in
    the training data (docling, for one, reads a leading 0xFF 0xFE as UTF-16),
    so a clear error asking to re-save the file is the safer behaviour. HTML is
    not checked: it declares its own charset, which docling honours.
    """
    data = path.read_bytes()
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            path.name,
            f"is not valid UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "re-save it as UTF-8",
        ) from exc


def count_text_items(document: DoclingDocument) -> int:
    """Number of items carrying text: text-like items, and tables with any cell text."""
    count = 0
    for item, _ in document.iterate_items():
        if isinstance(item, TextItem) and item.text.strip():
            count += 1
        elif isinstance(item, TableItem) and any(c.text.strip() for c in item.data.table_cells):
            count += 1
    return count


# --- paragraph rebuilding for the native PDF pipeline -------------------------


@dataclass
class _Line:
    """One native text line, with its box in top-left coordinates (top < bottom)."""

    text: str
    page_no: int
    bbox: BoundingBox  # original provenance box (bottom-left origin)
    left: float
    top: float
    right: float
    bottom: float
    shares_row: bool = False  # another line sits beside it (table cell, running header)

    @property
    def height(self) -> float:
        return self.bottom - self.top


def _native_lines(document: DoclingDocument) -> list[_Line]:
    lines = []
    for item, _ in document.iterate_items():
        if not isinstance(item, TextItem) or not item.text.strip() or not item.prov:
            continue
        prov = item.prov[0]
        page = document.pages.get(prov.page_no)
        if page is None:
            continue
        text = " ".join(item.text.split())
        height = page.size.height
        box = prov.bbox.to_top_left_origin(page_height=height)
        in_margin = box.b < PAGE_MARGIN * height or box.t > (1 - PAGE_MARGIN) * height
        if in_margin and text.isdigit() and len(text) <= 4:
            continue  # a page number, not content
        lines.append(_Line(text, prov.page_no, prov.bbox, box.l, box.t, box.r, box.b))
    _mark_shared_rows(lines)
    return lines


def _mark_shared_rows(lines: list[_Line]) -> None:
    """Flag lines that have another line beside them on the same row.

    Real paragraphs and headings span their row alone; table cells, page
    numbers next to running titles and the like do not.
    """
    by_page: dict[int, list[_Line]] = {}
    for line in lines:
        by_page.setdefault(line.page_no, []).append(line)
    for page_lines in by_page.values():
        for i, a in enumerate(page_lines):
            for b in page_lines[i + 1 :]:
                overlap = min(a.bottom, b.bottom) - max(a.top, b.top)
                side_by_side = a.right <= b.left or b.right <= a.left
                if side_by_side and overlap > 0.5 * min(a.height, b.height):
                    a.shares_row = b.shares_row = True


def _starts_with_bullet(text: str) -> bool:
    return text[0] in _BULLETS and (len(text) == 1 or text[1] == " ")


def _continues_block(block: list[_Line], line: _Line, line_height: float) -> bool:
    """Whether `line` continues the paragraph made of `block`."""
    prev = block[-1]
    if line.page_no != prev.page_no or _starts_with_bullet(line.text):
        return False
    block_left = min(x.left for x in block)
    block_right = max(x.right for x in block)
    # A short "5.1 Method" line is a heading even when set as tightly as body text.
    margin = SHORT_LINE_MARGIN * line_height
    if _is_numbered_title(line.text) and line.right < block_right - margin:
        return False
    if _is_numbered_title(prev.text) and prev.right < line.right - margin:
        return False
    # A line beside or above the previous one is another column or cell.
    if line.top < prev.bottom - 0.5 * min(prev.height, line.height):
        return False
    if line.top - prev.bottom >= MAX_LINE_GAP * line_height:
        return False
    if line.left >= block_right or line.right <= block_left:
        return False
    # A short line ending a sentence closes the paragraph even without a gap
    # (paragraphs marked only by a first-line indent).
    ends_sentence = prev.text[-1] in ".!?:"
    is_short = prev.right < block_right - margin
    return not (ends_sentence and is_short)


def _join_lines(lines: list[_Line]) -> str:
    """Join lines with spaces, undoing end-of-line hyphenation ("exam-" + "ple")."""
    text = lines[0].text
    for line in lines[1:]:
        nxt = line.text
        if len(text) > 1 and text[-1] == "-" and text[-2].isalpha() and nxt[0].islower():
            text = text[:-1] + nxt
        elif _CJK.match(text[-1]) and _CJK.match(nxt[0]):
            text += nxt  # Chinese/Japanese lines break between words without a space
        else:
            text += " " + nxt
    return text


def _looks_like_title(text: str) -> bool:
    """Short, unpunctuated, mostly letters (not a row of numbers), not a caption."""
    if len(text.split()) > MAX_HEADING_WORDS or text[-1] in ".,;:":
        return False
    if _starts_with_bullet(text) or _CAPTION.match(text):
        return False
    visible = text.replace(" ", "")
    return sum(ch.isalpha() for ch in visible) >= max(2, 0.5 * len(visible))


def _is_numbered_title(text: str) -> bool:
    return bool(_HEADING_NUMBER.match(text)) and _looks_like_title(text)


def _heading_level(block: list[_Line]) -> int | None:
    """Section level if this block looks like a heading, else None.

    A heading is one short line alone on its row, not ending in punctuation,
    starting with a capital letter (or any letter of a caseless script) or a
    section number, and mostly made of letters (so table rows of numbers are not
    mistaken for headings); figure/table/listing captions are excluded.
    Numbered headings get the depth of their number.
    """
    if len(block) != 1 or block[0].shares_row:
        return None
    text = block[0].text
    if not _looks_like_title(text):
        return None
    numbered = _SECTION_NUMBER.match(text)
    if numbered:
        return min(numbered.group(1).count(".") + 1, 6)
    first = text[0]
    if first.isupper() or (first.isalpha() and not first.islower()):
        return 1
    return None


def rebuild_paragraphs(native: DoclingDocument) -> DoclingDocument:
    """Group the native pipeline's text lines into paragraphs and headings.

    Consecutive lines on a page belong to one paragraph while the vertical gap
    between them is under 0.8 median line heights, the next line lies below the
    previous one in the same column, does not start with a bullet, and the
    previous line is not a short line ending a sentence. Single short lines that
    look like titles become section headers. Each new item keeps a provenance
    with its page and the union of its lines' boxes, so chunks know their pages.
    Pictures are dropped: the native pipeline gives them no image or caption.
    """
    lines = _native_lines(native)
    doc = DoclingDocument(name=native.name, origin=native.origin)
    for page in native.pages.values():
        doc.add_page(page_no=page.page_no, size=page.size)
    if not lines:
        return doc

    line_height = statistics.median(max(x.height, 1.0) for x in lines)
    blocks: list[list[_Line]] = []
    for line in lines:
        if blocks and _continues_block(blocks[-1], line, line_height):
            blocks[-1].append(line)
        else:
            blocks.append([line])

    for block in blocks:
        text = _join_lines(block)
        prov = ProvenanceItem(
            page_no=block[0].page_no,
            bbox=BoundingBox.enclosing_bbox([x.bbox for x in block]),
            charspan=(0, len(text)),
        )
        level = _heading_level(block)
        if level is not None:
            doc.add_heading(text=text, level=level, prov=prov)
        else:
            doc.add_text(label=DocItemLabel.PARAGRAPH, text=text, prov=prov)
    return doc
