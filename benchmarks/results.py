"""Results pages written by the benchmarks themselves: a script opens its page with `page(...)`,
prints its results through `emit`, and on success the page's block for that run is replaced by what
it emitted, under one header line (date, machine, commit, the command that made it). Text outside
the blocks (what a table means, written by hand) stays as it is; a failed run writes nothing.

    with page("throughput", "student") as emit:
        emit("| model | fit | bare |\\n|---|---:|---:|\\n| ... |")
"""

import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

RESULTS = Path("docs/results")
WRITTEN = (str(RESULTS), "README.md")  # what benchmarks write: not a change of the code being measured


def machine() -> str:
    """Cores, CPU model, AVX-512 or not, and the GPU (or none): what a speed depends on."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
               platform.processor() or platform.machine())  # fmt: skip
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except ImportError:
        gpu = "GPU unknown"
    return f"{os.cpu_count()} cores, {cpu}{', AVX-512' if 'avx512f' in info else ''}, {gpu}"


def commit() -> str:
    """HEAD's short hash, marked when tracked files other than those benchmarks write differ from it."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    dirty = [ln for ln in status.stdout.splitlines() if not ln[3:].startswith(WRITTEN)]
    return (rev or "unknown") + (" with uncommitted changes" if dirty else "")


def header(argv: list[str] | None = None) -> str:
    """The block's one header line: date, machine, commit and the command that wrote it."""
    args = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "benchmarks." + Path(sys.argv[0]).stem, *args])
    return f"Measured {time.strftime('%Y-%m-%d')} on {machine()}, commit {commit()}: `{command}`"


def markers(name: str, block: str) -> tuple[str, str]:
    tag = f"benchmarks.{name}" + (f" {block}" if block else "")
    return f"<!-- {tag}: begin (written by the script) -->", f"<!-- {tag}: end -->"


def replace_block(text: str, name: str, block: str, body: str) -> str:
    """`text` with the block between `name`/`block`'s markers replaced by `body` (appended when
    the page has no such block yet)."""
    begin, end = markers(name, block)
    new = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: new, text, count=1)
    return text.rstrip() + "\n\n" + new + "\n"


def write_block(path: Path, name: str, block: str, parts: list[str], title: str = "") -> None:
    """Replace (or append) the block `name`/`block` of the Markdown file `path` with `parts`, each
    a paragraph or a whole table, separated by blank lines; a new file gets `title` as its heading."""
    text = path.read_text() if path.exists() else f"# Results: {title or name}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_block(text, name, block, "\n\n".join(parts)))
    print(f"wrote {path}" + (f" ({block})" if block else ""))


@contextmanager
def page(name: str, block: str = "", title: str = "", root: Path = RESULTS) -> Iterator[Callable[[str], None]]:
    """Print and record the results of one run; on success write them to `root/<name>.md` as its
    block `block` (a page with several runs, e.g. the teacher's and the student's throughput,
    names one block per run). A new page gets `title` as its heading."""
    parts: list[str] = []

    def emit(text: str = "") -> None:
        print(text)
        parts.append(text)

    start = header()
    yield emit
    write_block(root / f"{name}.md", name, block, [start, *parts], title)
