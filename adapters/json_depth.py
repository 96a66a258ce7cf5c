"""How deeply a JSON text nests, found without parsing it (the HTTP and NATS edges refuse a
body nested deeper than TALLY_MAX_JSON_DEPTH before any parser recurses into it).

Every step is a bytes method (C speed): a batch of 1,000 usage events (160 KB) is scanned in
about 0.3 ms, a small body in about a microsecond."""

from __future__ import annotations

_MARKS = b'[]{}"'
_NOT_MARKS = bytes(b for b in range(256) if b not in _MARKS)
_SQUARE = bytes.maketrans(b"{}", b"[]")  # the kind of bracket does not change the depth


def nests_deeper_than(text: bytes, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels deep in `text`; brackets
    inside strings do not count."""
    if b"\\" in text:  # once escaped backslashes and quotes are gone, quotes delimit strings
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = text.translate(_SQUARE, _NOT_MARKS)
    if marks.count(b"[") <= limit:  # fewer brackets than the limit cannot nest deeper
        return False
    brackets = _outside_strings(marks)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")  # one level: the innermost pairs
    return bool(brackets) and _deepest(_outside_strings(marks)) > limit


def _outside_strings(marks: bytes) -> bytes:
    """The brackets of `marks` (brackets and quotes) that are not inside a string."""
    # Two quotes side by side hold no bracket between them (an empty string, or one string's
    # end and the next one's start): dropping them keeps every other mark inside or out.
    marks = marks.replace(b'""', b"")
    if b'"' in marks:  # strings with brackets in them
        marks = b"".join(marks.split(b'"')[::2])
    return marks


def _deepest(brackets: bytes) -> int:
    """The deepest level reached (what is left of a malformed text is counted as it is)."""
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte == 91 else -1  # 91: "["
        deepest = max(deepest, depth)
    return deepest
