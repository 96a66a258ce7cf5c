"""Unicode fonts for PDFs: Noto Sans, with fallback fonts for what it lacks.

The built-in PDF fonts only know Latin-1. These are TrueType/OpenType fonts embedded (as
subsets) in each document:
- Noto Sans (Latin, Greek, Cyrillic; regular and bold from its variable weight axis), from
  the `manimgx-fonts` package;
- fallbacks, in this order: Noto Sans Symbols, Noto Emoji (monochrome), Noto Sans for the
  other scripts (Arabic, Hebrew, Devanagari, Thai, ...), Noto Sans CJK (the `manimgx-fonts-cjk`
  package; its Japanese, Simplified or Traditional Chinese or Korean face by the customer's
  country), with DejaVu Sans before it where the system has it (dingbats, math).

A fallback font is only embedded when the document's text has a character the fonts before
it lack. Noto Sans CJK is a CFF2 variable collection: each document gets a TrueType subset
of the CJK characters it prints, at regular weight (fpdf2 would embed the CFF2 font in a form
PDF readers reject; making the subset takes under a second). Text is not shaped: Arabic and
Indic scripts print their letters in isolated forms.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

from fontTools.pens.cu2quPen import Cu2QuPen  # type: ignore[import-untyped]
from fontTools.pens.ttGlyphPen import TTGlyphPen  # type: ignore[import-untyped]
from fontTools.subset import Options as SubsetOptions  # type: ignore[import-untyped]
from fontTools.subset import Subsetter
from fontTools.ttLib import TTFont, newTable  # type: ignore[import-untyped]
from fontTools.varLib.instancer import (  # type: ignore[import-untyped]
    instantiateVariableFont,
)
from fpdf import FPDF

FAMILY = "notosans"  # the main family (regular "" and bold "B")
_NOTO = Path(str(files("manimgx_fonts")))
_CJK = Path(str(files("manimgx_fonts_cjk"))) / "NotoSansCJK-VF.otf.ttc"
# the faces of the Noto Sans CJK collection, and which countries read which
_CJK_FACES = {"JP": 0, "KR": 1, "SC": 2, "TC": 3, "HK": 4}
_CJK_BY_COUNTRY = {"KR": "KR", "KP": "KR", "CN": "SC", "SG": "SC", "TW": "TC", "HK": "HK"}
_CJK_BY_COUNTRY |= {"MO": "HK"}
_SCRIPTS = (
    *("Arabic", "Armenian", "Bengali", "Devanagari", "Ethiopic", "Georgian", "Gujarati"),
    *("Gurmukhi", "Hebrew", "Kannada", "Khmer", "Lao", "Malayalam", "Myanmar", "Oriya"),
    *("Sinhala", "Tamil", "Telugu", "Thai"),
)
_DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@dataclass(frozen=True)
class Face:
    """One font file (a face of a collection) under the family name fpdf2 knows it by."""

    family: str
    path: Path
    index: int = 0

    @property
    def coverage(self) -> frozenset[int]:
        return _coverage(self.path, self.index)

    def add_to(self, pdf: FPDF, *, bold: bool = False) -> None:
        """Register the face (its default instance: regular), and bold from the weight axis
        when asked."""
        pdf.add_font(self.family, "", self.path, collection_font_number=self.index)
        if bold:
            pdf.add_font(self.family, "B", _instance(self.path, 700))

    def register(self, pdf: FPDF, chars: set[int]) -> str:
        """Register the face as a fallback for these characters; returns its family name.
        A CFF2 collection (Noto Sans CJK) goes in as a TrueType subset of just these
        characters: fpdf2 would embed the CFF2 font in a form PDF readers reject."""
        if self.path.suffix != ".ttc":
            if self.family not in pdf.fonts:
                self.add_to(pdf)
            return self.family
        subsets: dict[str, set[int]] = getattr(pdf, "tally_subsets", {})
        for family, covered in subsets.items():
            if family.startswith(self.family) and chars <= covered:
                return family  # an earlier subset of this document has them all
        digest = hashlib.blake2b(repr(sorted(chars)).encode(), digest_size=6).hexdigest()
        family = f"{self.family}{digest}"
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / f"{family}.ttf"
            _truetype_subset(self.path, self.index, chars).save(path)
            pdf.add_font(family, "", path)  # fontTools keeps the file open: it may go
        subsets[family] = set(chars)
        pdf.tally_subsets = subsets  # type: ignore[attr-defined]
        return family


def _truetype_subset(path: Path, index: int, chars: set[int], weight: int = 400) -> TTFont:
    """These characters of a CFF2 variable font, at this weight, with TrueType outlines."""
    font = TTFont(path, fontNumber=index, recalcTimestamp=False)
    options = SubsetOptions()
    options.layout_features, options.hinting, options.notdef_outline = [], False, True
    subsetter = Subsetter(options)
    subsetter.populate(unicodes=chars)
    subsetter.subset(font)
    glyphs = font.getGlyphSet(location={"wght": weight}, normalized=False)
    glyf = newTable("glyf")
    glyf.glyphOrder, glyf.glyphs = font.getGlyphOrder(), {}
    for name in glyf.glyphOrder:
        pen = TTGlyphPen(glyphs)
        glyphs[name].draw(Cu2QuPen(pen, 1.0, reverse_direction=True))
        glyf.glyphs[name] = pen.glyph()
    for tag in ("CFF ", "CFF2", "VORG", "fvar", "avar", "HVAR", "VVAR", "MVAR", "STAT", "DSIG"):
        if tag in font:
            del font[tag]
    for tag in ("GDEF", "GPOS", "GSUB", "BASE"):
        if tag in font:
            del font[tag]
    font["glyf"], font["loca"] = glyf, newTable("loca")
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    for field in (
        "maxTwilightPoints",
        "maxStorage",
        "maxFunctionDefs",
        "maxInstructionDefs",
        "maxStackElements",
        "maxSizeOfInstructions",
        "maxComponentElements",
    ):
        setattr(maxp, field, 0)
    maxp.maxZones = 1
    font["head"].indexToLocFormat, font["head"].glyphDataFormat = 0, 0
    font["post"].formatType = 3.0  # no glyph names: the cmap maps by glyph id
    font.sfntVersion = "\x00\x01\x00\x00"
    return font


@cache
def _coverage(path: Path, index: int) -> frozenset[int]:
    font = TTFont(path, fontNumber=index, lazy=True)
    try:
        return frozenset(font.getBestCmap())
    finally:
        font.close()


_instances_lock = threading.Lock()


def _instance(path: Path, weight: int) -> Path:
    """A static instance of a variable font at this weight, made once and kept in the font
    cache directory (making it takes seconds; fpdf2 would make it for every document)."""
    stat = path.stat()
    target = _cache_dir() / f"{path.stem}-wght{weight}-{stat.st_size}-{int(stat.st_mtime)}.ttf"
    with _instances_lock:
        if not target.exists():
            font = instantiateVariableFont(TTFont(path), {"wght": weight}, updateFontNames=False)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(f".{os.getpid()}.tmp")
            font.save(partial)
            os.replace(partial, target)  # whole or absent, for other processes too
    return target


def _cache_dir() -> Path:
    configured = os.environ.get("TALLY_FONT_CACHE")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "tally-fonts"


PRIMARY = Face(FAMILY, _NOTO / "NotoSans[wght].ttf")


def fallbacks(country: str | None = None) -> list[Face]:
    """The fallback faces in the order they are tried (only those installed)."""
    faces = [
        Face("notosanssymbols", _NOTO / "NotoSansSymbols[wght].ttf"),
        Face("notoemoji", _NOTO / "NotoEmoji[wght].ttf"),
    ]
    faces += [Face(f"notosans{s.lower()}", _NOTO / f"NotoSans{s}[wght].ttf") for s in _SCRIPTS]
    faces.append(Face("dejavusans", _DEJAVU))
    region = _CJK_BY_COUNTRY.get((country or "").upper(), "JP")
    faces.append(Face(f"notosanscjk{region.lower()}", _CJK, _CJK_FACES[region]))
    return [face for face in faces if face.path.exists()]


def _printable(text: str) -> set[int]:
    """The code points that need a glyph (not spaces, controls or format characters)."""
    return {
        ord(char)
        for char in text
        if not char.isspace() and unicodedata.category(char) not in ("Cc", "Cf")
    }


def faces_for(text: str, country: str | None = None) -> list[Face]:
    """The fallback faces this text needs beyond the main font, first match wins."""
    missing = _printable(text) - PRIMARY.coverage
    needed: list[Face] = []
    for face in fallbacks(country) if missing else []:
        if missing & face.coverage:
            needed.append(face)
            missing -= face.coverage
        if not missing:
            break
    return needed


def use_unicode_fonts(pdf: FPDF, texts: Iterable[str], country: str | None = None) -> None:
    """Register the main family and the fallbacks these texts need on this document (again
    for more text: faces already there are kept), and make them the fallback fonts."""
    if FAMILY not in pdf.fonts:
        PRIMARY.add_to(pdf, bold=True)
    text = _printable("".join(texts))
    registered: list[str] = getattr(pdf, "tally_fallbacks", [])
    for face in faces_for("".join(texts), country):
        family = face.register(pdf, text & face.coverage)
        if family not in registered:
            registered.append(family)
    pdf.tally_fallbacks = registered  # type: ignore[attr-defined]
    pdf.set_fallback_fonts(registered, exact_match=False)
