"""Per-token byte and script features of a vocabulary (features only: no thresholds, no decisions).

For every vocabulary entry this module says which bytes it stands for, whether those bytes are
text on their own, and which scripts the text (or the text it is a fragment of) belongs to. The
scorer combines these features with corpus counts; nothing here decides whether a token is kept.

Functions (all pure; `classify_vocab` runs them over a whole vocabulary: Tekken's 131k ids in
about 1.2 s, 3 s on the first call of a process, which builds the code-point tables):

- `token_bytes(raw, family)`: bytes of a vocab entry. ``"bytelevel_bpe"``: the GPT-2
  byte-to-unicode map reversed (``Ġ`` -> 0x20, ``ì`` -> 0xEC, ...); ``"sentencepiece_bpe"`` /
  ``"unigram"``: ``▁`` -> space, ``<0xNN>`` byte-fallback pieces -> that byte, anything else
  UTF-8; ``"wordpiece"``: ``##`` stripped, UTF-8. ``None`` for special tokens and entries that
  cannot be mapped.
- `decoded_text(b)`: the UTF-8 text of the bytes, or ``None`` when they are not valid UTF-8.
- `space_marker(raw, family)`: the entry starts with the word-boundary marker (``Ġ`` / ``▁``;
  for WordPiece: it does *not* start with ``##``).
- `byte_class(raw, family)`: ``special`` | ``byte`` | ``complete`` | ``partial`` (see below).
- `script_class(text)`: one script class for a decoded string (rules below).
- `partial_scripts(b)` / `partial_is_hangul_only(b)`: which scripts a byte string that is not
  valid UTF-8 can be part of, from the UTF-8 structure alone.
- `classify_vocab(tok)`: all of the above for ids ``0 .. len(tok)-1``, as a polars DataFrame.

Byte classes
------------
``special``: an added/special token (``<s>``, ``[INST]``, ``<SPECIAL_12>``...), or an entry whose
bytes cannot be recovered (then ``token_bytes`` is ``None``). ``byte``: a base byte token, i.e. a
one-byte entry of byte-level BPE (all 256 of them, ASCII ``d`` included) or a ``<0xNN>``
byte-fallback piece. ``complete``: any other entry whose bytes are valid UTF-8. ``partial``: any
other entry whose bytes are not valid UTF-8 on their own (a byte-level BPE piece that cuts through
one or more multi-byte characters).

Script classes of a character, then of a string
-----------------------------------------------
A character is, in this order: ``whitespace`` (``str.isspace``); ``digit`` (category Nd, any
script: ``7``, ``７``, ``٧``); a letter script when it is a letter or mark (categories L*, M*)
in that script's blocks: ``hangul_syllable`` (U+AC00-D7A3), ``hangul_jamo`` (U+1100-11FF,
U+3130-318F, U+A960-A97F, U+D7B0-D7FF, halfwidth U+FFA0-FFDC, tone marks U+302E-302F),
``latin``, ``han`` (CJK ideographs incl. extensions and compatibility ideographs, plus
``々〆〇``), ``kana`` (hiragana, katakana incl. ``ー``, halfwidth and supplement), ``cyrillic``,
``arabic``, else ``other`` (Greek, Thai, Devanagari, ... and private-use characters);
``punct_symbol`` (everything else: punctuation, symbols and emoji, No/Nl numbers such as
``①½Ⅻ``, control and format characters such as ZWSP). Generic combining marks of the Unicode
``Inherited`` script (U+0300-036F, U+1AB0-1AFF, U+1DC0-1DFF, U+20D0-20FF, U+FE00-FE0F,
U+FE20-FE2F, U+E0100-E01EF) take the script of the letter they follow. Unassigned code points
(per Python's ``unicodedata``: Unicode 14.0 on Python 3.11) are ``other``.

A string's class is chosen for a user who picks the scripts to keep:

1. Hangul syllables and jamo count as one letter script (a string with both is
   ``hangul_syllable``, e.g. ``"안녕ㅋㅋ"``).
2. Exactly one letter script present -> that script, whatever whitespace, punctuation,
   symbols, digits or combining marks surround it: ``" 안녕"``, ``"다."``, ``"(주)"``,
   ``"2년"`` are all ``hangul_syllable``; ``"Ġthe"`` -> ``latin``.
3. Two or more letter scripts -> ``mixed`` (``"東京へ"``: han + kana, ``"A급"``: latin + Hangul).
4. No letter: ``digit`` if any digit (``"1,000"``, ``" 3."``), else ``punct_symbol`` if any
   punctuation/symbol (``"..."``, ``"😀"``), else ``whitespace``; a string of combining marks
   alone (possibly with whitespace) is ``other``. The empty string is ``other``.

Partial UTF-8: which scripts can a fragment belong to
-----------------------------------------------------
A partial token is a slice of valid UTF-8 text: ``[tail of a char] [complete chars]* [head of a
char]``, or a run of continuation bytes from inside a single char. The complete chars have their
own classes. A fragment constrains some bytes of a char's encoding; the set of code points whose
encoding agrees with it is computed exactly (per encoded length 2, 3, 4 and per position of the
fragment in the encoding), and the scripts of those code points are its possible scripts
(unassigned code points are left out; if only unassigned ones fit, e.g. ``BF BF BF`` ->
U+3FFFF, U+7FFFF..., the fragment is ``other``). Worked example::

    b"\\xEC\\x95"   head of a 3-byte char: 1110_1100 10_010101 10_xxxxxx
                   -> code points U+C540..U+C57F, all Hangul syllables -> {hangul_syllable}
    b"\\xEA"        head: U+A000..U+AFFF: Yi, Vai, Cyrillic Ext-B, Latin Ext-D, Hangul jamo
                   Ext-A, Hangul syllables from U+AC00 ... -> not Hangul-only
    b"\\x95\\x88"   tail of a 3-byte char: E?-95-88 for any lead E0..EF -> U+0548, U+1548, ...,
                   U+C548 (안), ... and also middle/tail of 4-byte chars -> many scripts
    "가" + b"\\xEB" complete 가 + head U+B000..U+BFFF -> {hangul_syllable}; Hangul-only

`partial_scripts` is the union of the complete chars' classes (whitespace and punctuation
included) and every fragment's possible scripts; it is empty only when the bytes cannot occur
in valid UTF-8 at all (an overlong lead, a surrogate, a stray byte). `partial_is_hangul_only`
is stricter: every fragment must be able to complete *only* to Hangul (syllables or jamo), and
the complete chars, if any, must be Hangul, whitespace, punctuation or digits.

It does not run language identification (``pipeline.langid``) or morphological analysis
(``pipeline.morph``), and it does not apply thresholds.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import NamedTuple

import numpy as np

FAMILIES = ("bytelevel_bpe", "sentencepiece_bpe", "unigram", "wordpiece")
BYTE_CLASSES = ("special", "byte", "complete", "partial")
SCRIPTS = ("whitespace", "digit", "punct_symbol", "hangul_syllable", "hangul_jamo", "latin",
           "han", "kana", "cyrillic", "arabic", "other")
SCRIPT_CLASSES = SCRIPTS + ("mixed",)
HANGUL_SCRIPTS = frozenset({"hangul_syllable", "hangul_jamo"})
NEUTRAL_SCRIPTS = frozenset({"whitespace", "digit", "punct_symbol"})
LETTER_SCRIPTS = frozenset(SCRIPTS) - NEUTRAL_SCRIPTS

METASPACE = "\u2581"
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")

# Internal per-code-point classes: indices 0..10 are SCRIPTS; two more never leave this module.
_WS, _DIGIT, _PUNCT, _SYL, _JAMO, _LATIN, _HAN, _KANA, _CYR, _ARAB, _OTHER = range(11)
_MARK = 11        # generic combining mark (Inherited): takes the script of the preceding letter
_UNASSIGNED = 12  # Cn, and surrogates (never in valid UTF-8)
_LETTER_IDS = frozenset(range(_SYL, _OTHER + 1))
_PUBLIC = SCRIPTS + ("other", "other")  # internal id -> public name

# --------------------------------------------------------------------------------------------
# Bytes of a vocabulary entry


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (as ``tokenizers``' ByteLevel uses it)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


@functools.cache
def _byte_decoder_table() -> dict[int, str]:
    """``str.translate`` table: byte-level char -> latin-1 char of its byte; chars below 256
    that are not in the map go to U+FFFF so that ``encode("latin-1")`` rejects them."""
    table = {ord(c): chr(b) for b, c in bytes_to_unicode().items()}
    for i in range(256):
        table.setdefault(i, "\uffff")
    return table


@functools.cache
def _byte_chars() -> frozenset[str]:
    return frozenset(bytes_to_unicode().values())


def token_bytes(raw: str | None, family: str, *, special: bool = False) -> bytes | None:
    """The bytes vocab entry ``raw`` stands for (see module docstring); ``None`` if special or
    not mappable (e.g. a byte-level entry with a character outside the byte map)."""
    if raw is None or special:
        return None
    if family == "bytelevel_bpe":
        try:
            return raw.translate(_byte_decoder_table()).encode("latin-1")
        except UnicodeEncodeError:
            return None
    if family in ("sentencepiece_bpe", "unigram"):
        m = _BYTE_FALLBACK.fullmatch(raw)
        if m:
            return bytes((int(m.group(1), 16),))
        return raw.replace(METASPACE, " ").encode("utf-8")
    if family == "wordpiece":
        return (raw[2:] if raw.startswith("##") else raw).encode("utf-8")
    raise ValueError(f"unknown tokenizer family {family!r}; expected one of {FAMILIES}")


def decoded_text(b: bytes | None) -> str | None:
    """``b`` as UTF-8 text, or ``None`` when it is not valid UTF-8 (or is ``None``)."""
    if b is None:
        return None
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return None


def space_marker(raw: str | None, family: str) -> bool:
    """Whether the entry starts with the word-boundary marker of its family."""
    if not raw:
        return False
    if family == "bytelevel_bpe":
        return raw.startswith("Ġ")
    if family in ("sentencepiece_bpe", "unigram"):
        return raw.startswith(METASPACE)
    if family == "wordpiece":
        return not raw.startswith("##")
    raise ValueError(f"unknown tokenizer family {family!r}; expected one of {FAMILIES}")


def is_base_byte(raw: str | None, family: str) -> bool:
    """A base byte token: one byte-level character, or a ``<0xNN>`` byte-fallback piece."""
    if not raw:
        return False
    if family == "bytelevel_bpe":
        return len(raw) == 1 and raw in _byte_chars()
    if family in ("sentencepiece_bpe", "unigram"):
        return _BYTE_FALLBACK.fullmatch(raw) is not None
    return False


def byte_class(raw: str | None, family: str, *, special: bool = False) -> str:
    """``special`` | ``byte`` | ``complete`` | ``partial`` (see module docstring)."""
    b = token_bytes(raw, family, special=special)
    if b is None:
        return "special"
    if is_base_byte(raw, family):
        return "byte"
    return "complete" if decoded_text(b) is not None else "partial"


# --------------------------------------------------------------------------------------------
# Per-code-point classes

_HANGUL_JAMO_RANGES = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xD7B0, 0xD7FF),
                       (0xFFA0, 0xFFDC), (0x302E, 0x302F))
_LATIN_RANGES = ((0x0041, 0x005A), (0x0061, 0x007A), (0x00AA, 0x00AA), (0x00BA, 0x00BA),
                 (0x00C0, 0x024F), (0x0250, 0x02AF), (0x02B0, 0x02FF), (0x1D00, 0x1DBF),
                 (0x1E00, 0x1EFF), (0x2071, 0x2071), (0x207F, 0x207F), (0x2090, 0x209C),
                 (0x2C60, 0x2C7F), (0xA720, 0xA7FF), (0xAB30, 0xAB6F), (0xFB00, 0xFB06),
                 (0xFF21, 0xFF3A), (0xFF41, 0xFF5A), (0x10780, 0x107BF), (0x1DF00, 0x1DFFF))
_HAN_RANGES = ((0x3005, 0x3007), (0x3021, 0x3029), (0x3038, 0x303B), (0x3400, 0x4DBF),
               (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x16FE2, 0x16FE3), (0x16FF0, 0x16FF1),
               (0x20000, 0x3FFFF))
_KANA_RANGES = ((0x3041, 0x309F), (0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F),
                (0x1AFF0, 0x1B16F))
_CYRILLIC_RANGES = ((0x0400, 0x052F), (0x1C80, 0x1C8F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F),
                    (0x1E030, 0x1E08F))
_ARABIC_RANGES = ((0x0600, 0x06FF), (0x0750, 0x077F), (0x0870, 0x089F), (0x08A0, 0x08FF),
                  (0xFB50, 0xFDFF), (0xFE70, 0xFEFF), (0x10EC0, 0x10EFF), (0x1EE00, 0x1EEFF))
_INHERITED_MARK_RANGES = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF),
                          (0xFE00, 0xFE0F), (0xFE20, 0xFE2F), (0xE0100, 0xE01EF))
# Number-letters that belong to Han (〇, Hangzhou numerals): Nl, but script Han.
_HAN_NUMBER_LETTERS = ((0x3007, 0x3007), (0x3021, 0x3029), (0x3038, 0x303A))


@functools.cache
def _class_table() -> np.ndarray:
    """uint8 class id for every code point 0..0x10FFFF (built once, ~0.1 s)."""
    n = 0x110000
    table = np.full(n, _UNASSIGNED, dtype=np.uint8)
    cat = np.zeros(n, dtype=np.uint8)  # 0 Cn/Cs, 1 letter/mark, 2 Nd, 3 punct/symbol, 4 Co
    code = {"L": 1, "M": 1, "N": 3, "P": 3, "S": 3, "Z": 3, "C": 3}
    # Planes 4-13 are unassigned; 15-16 are private use (bar the last two of each plane).
    for lo, hi in ((0, 0x40000), (0xE0000, 0xF0000)):
        cats = [unicodedata.category(chr(i)) for i in range(lo, hi)]
        cat[lo:hi] = [2 if c == "Nd" else 0 if c in ("Cn", "Cs") else 4 if c == "Co"
                      else code[c[0]] for c in cats]
    for lo in (0xF0000, 0x100000):
        cat[lo:lo + 0xFFFE] = 4
    table[cat == 3] = _PUNCT
    table[cat == 2] = _DIGIT
    table[cat == 4] = _OTHER
    letter = cat == 1
    table[letter] = _OTHER
    for cls, ranges in ((_LATIN, _LATIN_RANGES), (_CYR, _CYRILLIC_RANGES),
                        (_ARAB, _ARABIC_RANGES), (_KANA, _KANA_RANGES), (_HAN, _HAN_RANGES),
                        (_JAMO, _HANGUL_JAMO_RANGES), (_SYL, ((0xAC00, 0xD7A3),)),
                        (_MARK, _INHERITED_MARK_RANGES)):
        for lo, hi in ranges:
            sl = slice(lo, hi + 1)
            table[sl] = np.where(letter[sl], cls, table[sl])
    for lo, hi in _HAN_NUMBER_LETTERS:
        table[lo:hi + 1] = _HAN
    for i in range(0x3000 + 1):  # every str.isspace() char is below U+3001
        if chr(i).isspace():
            table[i] = _WS
    table.setflags(write=False)
    return table


@functools.cache
def _class_bytes() -> bytes:
    return _class_table().tobytes()  # bytes indexing is the fastest per-char lookup


def char_script(ch: str) -> str:
    """Class of one character (combining marks and unassigned code points are ``other``)."""
    return _PUBLIC[_class_bytes()[ord(ch)]]


def _string_class(ids: set[int]) -> str:
    letters = ids & _LETTER_IDS
    if _SYL in letters and _JAMO in letters:
        letters.discard(_JAMO)
    if len(letters) == 1:
        return SCRIPTS[letters.pop()]
    if letters:
        return "mixed"
    if _UNASSIGNED in ids:
        return "other"
    if _DIGIT in ids:
        return "digit"
    if _PUNCT in ids:
        return "punct_symbol"
    if _MARK in ids or not ids:
        return "other"
    return "whitespace"


def script_class(text: str) -> str:
    """One of `SCRIPT_CLASSES` for a decoded string (rules in the module docstring)."""
    table = _class_bytes()
    return _string_class({table[ord(c)] for c in text})


# --------------------------------------------------------------------------------------------
# Partial UTF-8


def _is_cont(x: int) -> bool:
    return 0x80 <= x <= 0xBF


def _seq_len(lead: int) -> int:
    """Encoded length announced by a lead byte; 0 when it cannot start a char in valid UTF-8."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def _key(frag: bytes, with_lead: bool) -> int:
    """Index into `_fragment_table`: the lead byte as is (0..255), then 6 bits per byte."""
    key = frag[0] if with_lead else frag[0] & 0x3F
    for x in frag[1:]:
        key = key * 64 + (x & 0x3F)
    return key


@functools.cache
def _encodings(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(bytes[N, n] uint8, class[N]) for every valid code point whose UTF-8 length is n."""
    lo, hi = {2: (0x80, 0x7FF), 3: (0x800, 0xFFFF), 4: (0x10000, 0x10FFFF)}[n]
    cps = np.arange(lo, hi + 1, dtype=np.int64)
    if n == 3:
        cps = cps[(cps < 0xD800) | (cps > 0xDFFF)]  # surrogates are not valid UTF-8
    out = np.empty((len(cps), n), dtype=np.int64)
    for p in range(n - 1, 0, -1):
        out[:, p] = 0x80 | ((cps >> (6 * (n - 1 - p))) & 0x3F)
    out[:, 0] = {2: 0xC0, 3: 0xE0, 4: 0xF0}[n] | (cps >> (6 * (n - 1)))
    return out, _class_table()[cps]


@functools.cache
def _fragment_table(n: int, s: int, e: int) -> np.ndarray:
    """Bitmask of internal classes for every possible value of bytes ``[s, e)`` of an n-byte
    encoding, indexed by `_key` (lead byte as 0..255 when s == 0, else 6 bits per byte)."""
    enc, cls = _encodings(n)
    key = np.zeros(len(enc), dtype=np.int64)
    for p in range(s, e):
        if p == 0:
            key = enc[:, 0].copy()
        else:
            key = key * 64 + (enc[:, p] & 0x3F)
    size = (256 if s == 0 else 64) * 64 ** (e - s - 1)
    table = np.zeros(size, dtype=np.uint16)
    for c in np.unique(cls):
        table[np.unique(key[cls == c])] |= np.uint16(1 << int(c))
    table.setflags(write=False)
    return table


def _lookup(n: int, s: int, e: int, frag: bytes) -> int:
    return int(_fragment_table(n, s, e)[_key(frag, s == 0)])


class Utf8Slice(NamedTuple):
    """A byte string read as a slice of valid UTF-8 text."""

    text: str                          # the complete characters, in order
    fragments: list[frozenset[str]]    # possible scripts of each fragment (tail, head or inner)


def split_utf8(b: bytes) -> Utf8Slice | None:
    """Read ``b`` as ``[tail][complete chars][head]`` (or an inner run of continuation bytes);
    ``None`` when ``b`` occurs in no valid UTF-8 text."""
    size = len(b)
    k = 0
    while k < size and _is_cont(b[k]):
        k += 1
    if k > 3:
        return None
    frags: list[frozenset[str]] = []
    if k == size and k:
        # Continuation bytes only: bytes [s, s+k) of an n-byte char, for every n and s >= 1.
        mask = 0
        for n in range(k + 1, 5):
            for s in range(1, n - k + 1):
                mask |= _lookup(n, s, s + k, b)
        return Utf8Slice("", [_mask_names(mask)]) if mask else None
    if k:
        mask = 0
        for n in range(k + 1, 5):  # the last k bytes of an n-byte char
            mask |= _lookup(n, n - k, n, b[:k])
        if not mask:
            return None
        frags.append(_mask_names(mask))
    i, chars = k, []
    while i < size:
        n = _seq_len(b[i])
        if n == 0:
            return None
        if i + n > size:  # head of a char: lead + some continuation bytes
            rest = b[i:]
            if not all(_is_cont(x) for x in rest[1:]):
                return None
            mask = _lookup(n, 0, len(rest), rest)
            if not mask:
                return None
            frags.append(_mask_names(mask))
            break
        try:
            chars.append(b[i:i + n].decode("utf-8"))
        except UnicodeDecodeError:
            return None
        i += n
    return Utf8Slice("".join(chars), frags)


@functools.cache
def _mask_names(mask: int) -> frozenset[str]:
    names = {_PUBLIC[c] for c in range(_UNASSIGNED) if mask >> c & 1}
    if not names and mask:  # only unassigned code points fit: still a possible character
        names.add("other")
    return frozenset(names)


def partial_scripts(b: bytes) -> set[str]:
    """Scripts (names from `SCRIPTS`) the bytes can belong to; see the module docstring.

    >>> sorted(partial_scripts(b"\\xec\\x95"))
    ['hangul_syllable']
    >>> sorted(partial_scripts("가".encode() + b"\\xeb"))
    ['hangul_syllable']
    """
    sl = split_utf8(b)
    if sl is None:
        return set()
    out = {char_script(c) for c in sl.text}
    for names in sl.fragments:
        out |= names
    return out


def partial_is_hangul_only(b: bytes) -> bool:
    """True when ``b`` has at least one fragment, every fragment can only be part of a Hangul
    character, and its complete characters (if any) are Hangul, whitespace, punct or digits."""
    sl = split_utf8(b)
    if sl is None or not sl.fragments:
        return False
    if not all(names <= HANGUL_SCRIPTS for names in sl.fragments):
        return False
    return not sl.text or script_class(sl.text) in HANGUL_SCRIPTS | NEUTRAL_SCRIPTS


# --------------------------------------------------------------------------------------------
# Whole vocabulary


def special_ids(tok) -> set[int]:
    """Ids of added tokens (special or not) and of the tokenizer's special tokens."""
    ids = {int(i) for i in tok.added_tokens_decoder}
    ids.update(i for i in tok.all_special_ids if i is not None)
    return ids


def classify_vocab(tok, family: str | None = None):
    """One row per id in ``range(len(tok))`` (polars DataFrame).

    Columns: ``token_id`` (Int64), ``token`` (raw vocab string, null for an id with no entry),
    ``token_bytes`` (Binary, null for special), ``decoded`` (String, null unless valid UTF-8),
    ``space_marker`` (Boolean, false for special), ``byte_class`` (String, `BYTE_CLASSES`),
    ``script`` (String, `script_class` of ``decoded``; null when ``decoded`` is null),
    ``partial_scripts`` (List[String], sorted; empty unless ``byte_class == "partial"``),
    ``partial_hangul_only`` (Boolean, `partial_is_hangul_only`; false unless partial),
    ``is_special`` (Boolean: added or special token).
    ``family`` defaults to ``pipeline.closure.tokenizer_family(tok)``.
    """
    import polars as pl

    from .closure import tokenizer_family

    family = family or tokenizer_family(tok)
    n = len(tok)
    raws = tok.convert_ids_to_tokens(list(range(n)))
    specials = special_ids(tok)
    table = _class_bytes()
    cols: dict[str, list] = {k: [] for k in ("token_bytes", "decoded", "space_marker",
                                             "byte_class", "script", "partial_scripts",
                                             "partial_hangul_only", "is_special")}
    scripts_cache: dict[bytes, tuple[list[str], bool]] = {}
    for i, raw in enumerate(raws):
        special = i in specials or raw is None
        b = token_bytes(raw, family, special=special)
        text = decoded_text(b)
        if b is None:
            bclass = "special"
        elif is_base_byte(raw, family):
            bclass = "byte"
        else:
            bclass = "complete" if text is not None else "partial"
        scripts, hangul_only = [], False
        if bclass == "partial":
            if b not in scripts_cache:
                scripts_cache[b] = (sorted(partial_scripts(b)), partial_is_hangul_only(b))
            scripts, hangul_only = scripts_cache[b]
        cols["token_bytes"].append(b)
        cols["decoded"].append(text)
        cols["space_marker"].append(not special and space_marker(raw, family))
        cols["byte_class"].append(bclass)
        cols["script"].append(None if text is None
                              else _string_class({table[ord(c)] for c in text}))
        cols["partial_scripts"].append(scripts)
        cols["partial_hangul_only"].append(hangul_only)
        cols["is_special"].append(i in specials)
    return pl.DataFrame(
        {"token_id": list(range(n)), "token": raws, **cols},
        schema={"token_id": pl.Int64, "token": pl.String, "token_bytes": pl.Binary,
                "decoded": pl.String, "space_marker": pl.Boolean, "byte_class": pl.String,
                "script": pl.String, "partial_scripts": pl.List(pl.String),
                "partial_hangul_only": pl.Boolean, "is_special": pl.Boolean},
    )
