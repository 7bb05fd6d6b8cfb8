"""Names a user chose (class folders, experiment names, revisions) written into Markdown and plots:
escaped so that they show as written and can neither change the document (a `|` splitting a
table cell, `<img>` in a pull-request comment) nor break the plot (an odd `$` is mathtext)."""

import re

# CommonMark renders each literally after a backslash; `_` only where it could open or close
# emphasis (not inside a word: true_label stays as it is)
PUNCTUATION = re.compile(r"([\\`*\[\]<>|~&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def _one_line(text: object) -> str:
    return re.sub(r"[\r\n]", " ", str(text))


def md(text: object) -> str:
    """`text` as literal Markdown text (a table cell or a line): punctuation backslash-escaped."""
    return PUNCTUATION.sub(r"\\\1", _one_line(text))


def md_code(text: object, cell: bool = True) -> str:
    """`text` as an inline code span: a fence longer than any run of backticks inside; in a table
    `cell`, `|` escaped (GitHub splits table cells on it even inside code spans, and shows the
    backslash anywhere else)."""
    s = _one_line(text).replace("|", "\\|") if cell else _one_line(text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def plot_label(text: object) -> str:
    """`text` for a matplotlib label: `$` shown as a dollar sign, not mathtext; a leading `_`
    kept (matplotlib's legend hides such labels)."""
    s = _one_line(text).replace("$", r"\$")
    return " " + s if s.startswith("_") else s
