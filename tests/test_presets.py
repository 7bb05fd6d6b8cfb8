"""`tinycls preset`: a partial params.yaml applied in one step, comments and layout kept."""

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tinycls.cli import app
from tinycls.errors import InputError
from tinycls.presets import apply, changes_of

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "presets", tmp_path / "presets")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_photos_preset_sets_its_values_and_keeps_everything_else(project):
    before_text = (project / "params.yaml").read_text()
    before = yaml.safe_load(before_text)
    result = runner.invoke(app, ["preset", "photos"])
    assert result.exit_code == 0, result.output
    after_text = (project / "params.yaml").read_text()
    after = yaml.safe_load(after_text)
    wanted = changes_of(project / "presets" / "photos.yaml")
    for dotted, value in wanted.items():
        section, key = dotted.split(".")
        assert after[section][key] == value
        assert f"{dotted}: {before[section][key]!r} -> {value!r}" in result.output
    changed = {f"{s}.{k}" for s in before for k in before[s] if before[s][k] != after[s][k]}
    assert changed == {d for d, v in wanted.items() if before[d.split(".")[0]][d.split(".")[1]] != v}
    # comments and every untouched line survive: only the preset's lines differ
    diff = [(a, b) for a, b in zip(before_text.splitlines(), after_text.splitlines(), strict=True) if a != b]
    assert len(diff) == len(changed)
    assert all("#" in b for a, b in diff if "#" in a)


def test_a_second_application_changes_nothing(project):
    runner.invoke(app, ["preset", "photos"])
    result = runner.invoke(app, ["preset", "photos"])
    assert result.exit_code == 0 and "already has every value" in result.output


def test_unknown_key_is_an_error_naming_it_and_nothing_is_written(project):
    text = (project / "params.yaml").read_text()
    with pytest.raises(InputError, match=r"student\.epoch not in .*params.yaml"):
        apply({"student.epoch": 3, "student.epochs": 3}, project / "params.yaml")
    assert (project / "params.yaml").read_text() == text


def test_unknown_preset_lists_the_known_ones(project):
    result = runner.invoke(app, ["preset", "phtos"])
    assert isinstance(result.exception, InputError)
    message = str(result.exception)
    assert "presets/phtos.yaml does not exist" in message and "Known presets: photos" in message


def test_nested_keys_are_set_one_by_one(project, tmp_path):
    (tmp_path / "mine.yaml").write_text("assistant:\n  kd:\n    views: 2\n")
    result = runner.invoke(app, ["preset", str(tmp_path / "mine.yaml")])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((project / "params.yaml").read_text())["assistant"]["kd"]["views"] == 2
