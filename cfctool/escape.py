"""Text from a checkpoint, a data file or a config on its way into another language: one
function per target, and no other way out.

Every file cfctool reads may come from anyone. Its strings are data; these functions make
sure they stay data wherever they are written: inside a C comment (where `*/`, a backslash
line splice or a `??/` trigraph would end the comment and let code follow), on a terminal
(where escape sequences move the cursor, retitle windows or hide text), in a Markdown table
(where `|` and newlines break the table and `<`/`[` make markup), and as a C identifier.
"""

from __future__ import annotations

import hashlib
import re

# in a C comment: letters, digits and a few punctuation marks that can form neither `*/`,
# a line splice (`\`), a trigraph (`??/`), a digraph nor a preprocessor line
_C_COMMENT_SAFE = re.compile(r"[^A-Za-z0-9 _.,:;=+()\[\]-]")
_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
C_NAME_LIMIT = 40  # identifiers NAME_reset etc. stay well inside C99's 63 significant characters
# C0 and C1 controls, DEL, and the Unicode formatting characters that reorder or hide text
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_MARKDOWN_SPECIAL = re.compile(r"([\\`\[\]<|])")


def c_comment(text: object, limit: int = 80) -> str:
    """`text` made safe for the inside of a C block comment: every character outside a small
    ASCII set becomes `_`, and the result is cut to `limit` characters."""
    out = _C_COMMENT_SAFE.sub("_", str(text))
    return out if len(out) <= limit else out[: limit - 3] + "..."


def c_identifier(text: str) -> str:
    """A C identifier from any text (a file name): letters, digits and underscores, never
    starting with a digit or an underscore; a name longer than C_NAME_LIMIT is shortened to
    its start plus a hash of the whole, so two long names stay apart."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", str(text)).strip("_") or "model"
    if name[0].isdigit():
        name = f"m_{name}"
    if len(name) > C_NAME_LIMIT:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: C_NAME_LIMIT - 9].rstrip('_')}_{digest}"
    return name


def is_c_identifier(text: str) -> bool:
    """Whether `text` is a C identifier cfctool would emit (the pattern and the length bound)."""
    return bool(_C_IDENTIFIER.fullmatch(text)) and len(text) <= C_NAME_LIMIT and not text.startswith("_")


def terminal(text: object, limit: int | None = None, lines: bool = False) -> str:
    """`text` for a terminal or a log line: control characters (escape sequences, carriage
    returns, bidirectional overrides) shown as `?`, tabs as spaces, and newlines as spaces
    too unless `lines` (a multi-line message of cfctool's own)."""
    text = str(text).replace("\r", " ").replace("\t", " ")
    out = _CONTROLS.sub("?", text if lines else text.replace("\n", " "))
    return out if limit is None or len(out) <= limit else out[: limit - 3] + "..."


def markdown_cell(text: object) -> str:
    """`text` for one cell of a Markdown table: terminal-safe, on one line, with `|`, `\\`,
    backticks, brackets and `<` (links, code, HTML) backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", terminal(text))
