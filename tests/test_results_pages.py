"""benchmarks.results: a benchmark writes its own results page, keeping the prose around its block."""

import re

import pytest

from benchmarks.results import markers, page, replace_block

PAGE = """# Results: training throughput

What the table means, written by hand.

{begin}
Measured 2020-01-01 on an old machine, commit 0000000.

| model | fit |
|---|---:|
| old | 1 |
{end}

A note after the table.
"""


def test_a_run_replaces_its_block_and_keeps_the_prose_and_other_blocks(tmp_path):
    begin, end = markers("throughput", "student")
    other = "\n".join(markers("throughput", "teacher"))
    (tmp_path / "throughput.md").write_text(PAGE.format(begin=begin, end=end) + "\n" + other + "\n")
    with page("throughput", "student", root=tmp_path) as emit:
        emit("| model | fit |\n|---|---:|\n| new | 2 |")
        emit("ratio: 98%")
    text = (tmp_path / "throughput.md").read_text()
    assert "| new | 2 |" in text and "| old | 1 |" not in text and "2020-01-01" not in text
    assert "What the table means, written by hand." in text and "A note after the table." in text
    assert other in text  # the teacher's block is another run's: untouched
    block = text[text.index(begin) : text.index(end)]
    # one header line: today's date, the machine, the commit and the command
    assert re.search(r"Measured \d{4}-\d\d-\d\d on \d+ cores, .+, commit \w+.*: `python -m benchmarks\.", block)
    assert "| new | 2 |\n\nratio: 98%" in block  # a table ends before the text after it


def test_a_page_without_the_block_gets_it_appended_and_a_new_page_its_title(tmp_path):
    with page("memory", title="peak memory", root=tmp_path) as emit:
        emit("| n | MB |\n|---|---|\n| 10 | 5 |")
    text = (tmp_path / "memory.md").read_text()
    assert text.startswith("# Results: peak memory\n") and "| 10 | 5 |" in text
    assert replace_block("# T\n", "memory", "", "x").endswith(markers("memory", "")[1] + "\n")


def test_a_failed_run_writes_nothing(tmp_path):
    with pytest.raises(RuntimeError), page("anchors", root=tmp_path) as emit:
        emit("| half | a table |")
        raise RuntimeError("the benchmark failed")
    assert not (tmp_path / "anchors.md").exists()


def test_every_results_page_and_the_readme_table_are_written_by_a_script():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "docs/results").glob("*.md")):
        name = path.stem
        assert (root / f"benchmarks/{name}.py").is_file(), f"{path.name}: no benchmarks/{name}.py writes it"
        assert f"<!-- benchmarks.{name}" in path.read_text(), f"{path.name}: no block written by its script"
    begin, end = markers("fresh_clone", "readme")
    readme = (root / "README.md").read_text()
    assert readme.index(begin) < readme.index("| `score` | test F1") < readme.index(end)


def test_the_stage_table_renders_the_committed_metrics():
    import json
    from pathlib import Path

    from benchmarks.pipeline import results

    root = Path(__file__).resolve().parents[1]
    metrics = {p.stem: json.loads(p.read_text()) for p in sorted((root / "metrics").glob("*.json"))}
    rows = results(metrics)
    assert list(rows)[:2] == ["prepare", "pretrain"] and list(rows)[-1] == "score"
    s = metrics["score"]
    assert f"test F1 {s['f1']:.4f}" in rows["score"] and f"{s['macs']:,} MACs" in rows["score"]
