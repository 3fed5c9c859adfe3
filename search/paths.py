"""File paths that are not valid UTF-8: stored losslessly, shown escaped.

Linux paths are bytes. Python gives a name that is not valid UTF-8 to us as a ``str`` with
lone surrogates (``os.fsdecode``: byte 0xff -> U+DCFF), which SQLite cannot hold as text and
JSON, HTML and terminals cannot show. So:

- ``to_db`` / ``from_db``: the path as stored in SQLite. Each lone surrogate becomes
  U+FFFF + four hex digits, and U+FFFF itself (a noncharacter: never in real names, but legal)
  is doubled. The mapping works one character at a time, so a prefix of a path maps to a
  prefix of its stored form (folder queries stay plain SQL prefix tests), and every valid
  UTF-8 path is stored exactly as before.
- ``shown``: the path for people and JSON: undecodable bytes as ``\\xff``, control
  characters (newline, tab, ANSI escapes ...) as ``\\n``, ``\\t``, ``\\x1b``, the
  bidirectional and line-separator controls that make a name display as another
  (``evil\\u202etxt.exe``) as ``\\u202e``, and the noncharacters U+FFFE, U+FFFF. A
  backslash shows doubled, so no two names show alike (a name holding the four characters
  ``\\xff`` shows as ``\\\\xff``). Display only: open files with the original path.
"""

from __future__ import annotations

import re

ESC = "\uffff"
_TO_DB = re.compile("[\ud800-\udfff\uffff]")
_FROM_DB = re.compile(f"{ESC}({ESC}|[0-9a-f]{{4}})")
# controls, undecodable bytes, bidi controls, line separators, U+FFFE/U+FFFF, the backslash
_UNSHOWABLE = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]"
)
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def to_db(path: str) -> str:
    """``path`` as stored in the catalog (unchanged unless it holds surrogates or U+FFFF)."""
    if _TO_DB.search(path) is None:
        return path
    return _TO_DB.sub(lambda m: ESC + ESC if m[0] == ESC else f"{ESC}{ord(m[0]):04x}", path)


def from_db(stored: str) -> str:
    """The path ``to_db`` stored (surrogates back, so ``open`` finds the same bytes)."""
    if ESC not in stored:
        return stored
    return _FROM_DB.sub(lambda m: ESC if m[1] == ESC else chr(int(m[1], 16)), stored)


def shown(path: str) -> str:
    """``path`` escaped for a terminal, JSON or a page: always encodable as UTF-8."""
    if _UNSHOWABLE.search(path) is None:
        return path
    return _UNSHOWABLE.sub(_escape, path)


def _escape(m: re.Match[str]) -> str:
    ch = m[0]
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as os.fsdecode escaped it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
