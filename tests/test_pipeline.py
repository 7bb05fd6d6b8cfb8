"""params.yaml and dvc.yaml agree with the code, and one real `dvc repro` on a tiny profile."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.params import TEACHER_OUTPUTS
from stages.teacher import Cap
from stages.training import split_section
from tests.conftest import CLASSES, make_imagefolder
from tinycls.compress_student import CompressConfig
from tinycls.config import from_section
from tinycls.distill import TEACHER_ROLES, KDConfig
from tinycls.evaluate import HEADLINE, ScoreConfig
from tinycls.prepare_config import PrepareConfig
from tinycls.pretrain import DATA_KEYS, PretrainConfig
from tinycls.pseudo import TRAIN_ON, DataConfig, PseudoConfig
from tinycls.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_every_params_section_parses():
    from_section(PrepareConfig, PARAMS["prepare"], "prepare")
    extras = {
        "teacher": [(Cap, ("max_per_class",))],
        "assistant": [(KDConfig, "kd"), (DataConfig, ("train_on",))],
        "student": [(DataConfig, ("train_on", "allow_unmatched_init"))],
    }
    for name, more in extras.items():
        model, cfg, built = split_section(name, PARAMS[name], more)
        assert cfg.epochs >= 1 and model.input_size >= 8 and len(built) == len(more)
    assert PARAMS["student"]["train_on"] in TRAIN_ON
    assert PARAMS["teacher"]["cutmix_prob"] > 0  # the recipe's teacher uses CutMix
    # the quick start's teacher starts from ImageNet weights that install offline
    assert PARAMS["teacher"]["pretrained"] and PARAMS["teacher"]["weights"].startswith("package:")
    pre = PARAMS["pretrain"]
    from_section(PretrainConfig, {k: v for k, v in pre.items() if k in DATA_KEYS}, "pretrain")
    from_section(TrainConfig, {k: v for k, v in pre.items() if k not in DATA_KEYS}, "pretrain")
    assert pre["source"] == "digits"  # the quick start pretrains offline
    from_section(PseudoConfig, PARAMS["pseudo"], "pseudo")
    kd = from_section(KDConfig, PARAMS["kd"], "kd")
    assert kd.mode == "true_label" and kd.teachers == ["teacher"] and kd.temperature == 20.0 and kd.alpha == 0.3
    assert kd.teacher_outputs == "views" and kd.views >= 1  # consistent teaching (issue 26)
    assert from_section(KDConfig, PARAMS["assistant"]["kd"], "assistant.kd").teachers == ["teacher"]
    assert tuple(TEACHER_OUTPUTS) == TEACHER_ROLES  # every name a kd.teachers list may hold has a checkpoint
    c = from_section(CompressConfig, PARAMS["compress"], "compress")
    # off by default: on the quick start layer pruning costs more F1 than it saves MACs (docs/compression.md);
    # fine-tuning stays set for when a user turns a kind on
    assert c.keep_blocks == [] and not c.on and c.epochs >= 1
    from_section(ScoreConfig, PARAMS["score"], "score")
    from stages.check import SECTIONS

    assert tuple(PARAMS) == SECTIONS  # every section, in pipeline order, [nas] (tinycls nas) last
    from tinycls.macs import count_macs
    from tinycls.models import arch_kwargs, build_model
    from tinycls.nas.config import NasConfig

    nas = from_section(NasConfig, PARAMS["nas"], "nas")
    student = PARAMS["student"]
    # the search's budget is the student's, at its input size, and the default student fits it
    assert nas.input_sizes == [student["input_size"]] and nas.max_macs == student["max_macs"]
    macs = count_macs(build_model(student["arch"], 10, **arch_kwargs(student["arch"])), student["input_size"])[0]
    assert macs <= student["max_macs"]


def _imports(path: Path) -> set[str]:
    """Local modules (stages.*, tinycls.*) imported by `path`, transitively, as file paths."""
    seen: set[str] = set()
    todo = [path]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                # `from stages import teacher` imports the module stages.teacher
                else (
                    [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                    if isinstance(node, ast.ImportFrom) and node.module
                    else []
                )
            )
            for name in names:
                top = name.split(".")[0]
                if top not in ("stages", "tinycls"):
                    continue
                rel = ("src/" if top == "tinycls" else "") + name.replace(".", "/") + ".py"
                if (ROOT / rel).exists() and rel not in seen:
                    seen.add(rel)
                    todo.append(ROOT / rel)
    return seen


TRAINING = ("pretrain", "teacher", "assistant", "student")  # the stages with a `processes` key


@pytest.mark.parametrize("stage", list(DVC["stages"]))
def test_stage_script_exists_and_declares_its_imports_and_params(stage):
    spec = DVC["stages"][stage]
    script = f"stages/{stage}.py"
    # a training stage starts through the launcher, on params.yaml [stage].processes processes
    launched = f"python -m stages.launch ${{{stage}.processes}} stages.{stage}"
    assert spec["cmd"] in (f"python -m stages.{stage}", launched) and (ROOT / script).exists()
    assert (spec["cmd"] == launched) == (stage in TRAINING)
    code = {d for d in spec["deps"] if d.endswith(".py")}
    imports = _imports(ROOT / script) | {script}
    if stage in TRAINING:
        imports |= _imports(ROOT / "stages/launch.py") | {"stages/launch.py"}
    # Exactly the import closure: a missing module would not rerun the stage when it changes, an
    # extra one would rerun it for nothing (a change to compression code reruns only compress, score).
    assert not imports - code, f"dvc.yaml stage {stage} imports {sorted(imports - code)} but does not list them in deps"
    assert not code - imports, f"dvc.yaml stage {stage} lists {sorted(code - imports)} in deps but does not import them"
    text = (ROOT / script).read_text()
    if stage == "check":  # reads every section: depends on the whole file
        assert spec["params"] == [{"params.yaml": None}]
        return
    read = set(re.findall(r'section\("(\w+)"\)', text))
    read |= {".".join(k) for k in re.findall(r'value\("(\w+)", "(\w+)"\)', text)}
    assert read == set(spec["params"])


def test_no_stage_after_prepare_depends_on_the_image_decoders():
    # the cache's readers live in tinycls.cache and [prepare]'s settings in tinycls.prepare_config:
    # a decoder change reruns prepare alone, not the teacher or the student on a byte-identical cache
    decoders = {"src/tinycls/data.py", "src/tinycls/images.py", "src/tinycls/prepare.py"}
    for name, spec in DVC["stages"].items():
        if name != "prepare":
            assert not decoders & set(spec["deps"]), f"{name} depends on {sorted(decoders & set(spec['deps']))}"


def test_no_import_cycle_in_the_library():
    # every `from tinycls... import` counts, those inside functions too
    src = ROOT / "src"
    modules = {".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__") for p in src.rglob("*.py")}
    graph = {}
    for path in src.rglob("*.py"):
        name = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tinycls":
                for a in node.names:  # `from tinycls.x import y`: module tinycls.x.y if there is one, else tinycls.x
                    deps.add(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module)
        graph[name] = deps - {name, "tinycls"}
    state = {}

    def visit(m, trail):
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            assert state.get(d) != "open", "import cycle: " + " -> ".join([*trail, m, d])
            if d not in state:
                visit(d, [*trail, m])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_compression_code_reruns_only_compress_and_what_reads_its_model():
    # checkpoints rebuild pruned models through tinycls.structure, not tinycls.compress, so a
    # change to compression code reruns compress (and score, which reads artifacts/compress)
    lists = {name for name, spec in DVC["stages"].items() if "src/tinycls/compress.py" in spec["deps"]}
    assert lists == {"check", "compress"}  # check reruns on any code change; its output never changes
    readers = {name for name, spec in DVC["stages"].items() if "artifacts/compress/model.pt" in spec["deps"]}
    assert readers == {"score", "export"}


def test_outputs_are_outside_data_and_metrics_uncached():
    for stage in DVC["stages"].values():
        for out, path in zip(stage["outs"], outs(stage), strict=True):
            assert not path.startswith("data/")
            if path.startswith(("metrics/", "plots/", "live/")):
                assert out[path]["cache"] is False
    # DVC shows the headline alone as metrics; every stage still writes its detail file
    assert DVC["metrics"] == ["metrics/headline.json"] and "metrics/headline.json" in outs(DVC["stages"]["score"])
    for name, stage in DVC["stages"].items():
        assert name == "check" or f"metrics/{name}.json" in outs(stage), name


def test_what_an_interrupted_stage_leaves_beside_its_outputs_is_git_ignored():
    """Ctrl-C leaves `<checkpoint stem>.last.pt` beside a stage's checkpoint, and a killed write its
    `.tmp`: neither may be one `git add -A` away from a commit."""
    left = [f"{p.removesuffix('.pt')}.last.pt" for s in DVC["stages"].values() for p in outs(s) if p.endswith(".pt")]
    left += [f"{p}.tmp" for s in DVC["stages"].values() for p in outs(s)] + ["artifacts/prepare/train_images.npy.tmp"]
    r = subprocess.run(["git", "check-ignore", "--no-index", "-v", *left], cwd=ROOT, capture_output=True, text=True)
    ignored = {line.split("\t")[-1] for line in r.stdout.splitlines()}
    assert len(left) > 10 and not set(left) - ignored, sorted(set(left) - ignored)


def outs(stage: dict) -> list[str]:
    return [out if isinstance(out, str) else next(iter(out)) for out in stage["outs"]]


def test_every_stage_declares_what_it_reads_beyond_code():
    """The params check runs first (every stage depends on its output); stages that decode, train
    or score depend on the pinned library versions, and those that load ImageNet weights on
    weights/ (a local weights file must sit there); those that build a network from a spec name
    (nas:specs/...) on specs/, so that an edited spec reruns them."""
    for name, spec in DVC["stages"].items():
        if name == "check":
            assert not any(d.startswith("artifacts/") for d in spec["deps"])  # nothing runs before it
            continue
        assert "artifacts/check/checked.txt" in spec["deps"] and "requirements.lock" in spec["deps"], name
        assert ("weights" in spec["deps"]) == (name in ("teacher", "assistant", "student")), name
        assert ("specs" in spec["deps"]) == (name in ("pretrain", "assistant", "student")), name
    assert "specs" in DVC["stages"]["check"]["deps"]
    assert (ROOT / "weights" / "README.md").is_file()


def _sh(cwd: Path, *cmd: str, fails: bool = False) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(cwd / "src"),
        "DVC_NO_ANALYTICS": "1",
    }
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert (r.returncode != 0) == fails, f"{' '.join(cmd)}: exit {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def test_only_score_reads_the_test_labels():
    """The no-test-leakage rule, structurally: held-out test names and labels are a dependency
    of the score stage alone, and no other stage script mentions them."""
    for name, stage in DVC["stages"].items():
        reads = any(d.startswith("artifacts/held_out") for d in stage["deps"])
        mentions = "held_out" in (ROOT / f"stages/{name}.py").read_text().lower()
        assert reads == (name == "score")
        assert mentions == (name in ("score", "prepare"))  # prepare writes it


def _tiny_repo(tmp_path: Path, train_on: str = "train_val", threshold: float = 0.7, **dataset: bool) -> Path:
    repo = tmp_path / "repo"
    for name in ("src", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("weights", "specs"):  # dvc.yaml deps
        shutil.copytree(ROOT / name, repo / name)
    for name in ("dvc.yaml", "requirements.lock", ".gitignore"):
        shutil.copy(ROOT / name, repo)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"].update(dataset="tiny", image_size=16, max_per_class=0, workers=1)
    # the ShuffleNet: compress prunes its blocks below (a spec network has no block stages)
    params["student"].update(
        arch="pytorchcv:shufflenet_g3_wd4", epochs=1, batch_size=8, input_size=16, train_on=train_on
    )
    # a 1-epoch teacher on 24 images is weak: trust it anyway, so that pseudo labels are used
    params["pseudo"].update(threshold=threshold, min_teacher_f1=0.0)
    params["teacher"].update(
        arch="pytorchcv:shufflenet_g3_wd4", pretrained=False, weights="", epochs=1, batch_size=8, input_size=16
    )
    params["assistant"].update(arch="pytorchcv:shufflenet_g3_wd4", epochs=1, batch_size=8, input_size=16)
    params["pretrain"].update(epochs=1, batch_size=64, input_size=16)
    params["kd"].update(mode="none")
    params["compress"].update(keep_blocks=[2, 5, 2], epochs=1)
    params["export"].update(latency_runs=20, latency_warmup=2)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    make_imagefolder(repo / "data" / "tiny", **dataset)
    _sh(repo, "git", "init", "-q")
    _sh(repo, "git", "config", "user.email", "ci@tinycls")
    _sh(repo, "git", "config", "user.name", "ci")
    _sh(repo, "dvc", "init", "-q")
    _sh(repo, "dvc", "add", "-q", "data")
    _sh(repo, "git", "add", "-A")
    _sh(repo, "git", "commit", "-qm", "tiny")
    return repo


@pytest.mark.slow
def test_dvc_repro_unlabelled_test_with_val_folder(tmp_path):
    repo = _tiny_repo(tmp_path, val=True, labelled_test=False)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["pretrain"]["source"] = "none"  # the stage still leaves every declared output
    params["compress"]["keep_blocks"] = []  # compression off, as in the quick start
    # Every param is checked before any stage works: the check stage stops dvc repro, naming
    # each problem, with no traceback, and nothing else runs.
    bad = {**params, "student": {**params["student"], "batch_size": 0}, "studnet": {"epochs": 3}}
    (repo / "params.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    out = _sh(repo, "dvc", "repro", fails=True)
    assert re.findall(r"Running stage '(\w+)'", out) == ["check"] and "Traceback" not in out, out
    assert "[student].batch_size: 0 must be >= 1" in out and "unknown section [studnet]" in out
    assert not (repo / "artifacts").exists()
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _sh(repo, "dvc", "repro")
    assert "Data and pipelines are up to date" in _sh(repo, "dvc", "status")
    # F1 on the holdout of train/ (test/ is unlabelled): no stage trained on it or picked epochs with it
    score = json.loads((repo / "metrics" / "score.json").read_text())
    prepared = json.loads((repo / "metrics" / "prepare.json").read_text())
    assert prepared["val_source"] == "val/" and prepared["images"]["holdout"] == 3
    assert score["f1_split"].startswith("holdout (3 train/ images") and 0 <= score["f1"] <= 1
    assert score["onnx_f1"] is not None and sum(1 for _ in open(repo / "plots/score/confusion.csv")) == 1 + 3
    rows = (repo / "artifacts" / "score" / "submission.csv").read_text().splitlines()
    assert sorted(r.split(",")[0] for r in rows[1:]) == sorted(f"test/{c}{i}.png" for c in CLASSES for i in range(3))
    # no pretraining, no assistant, no compression: their curves folders still load, empty
    assert "teacher_f1" not in json.loads((repo / "metrics" / "headline.json").read_text())  # no test labels
    assert json.loads((repo / "metrics" / "compress.json").read_text())["compressed"] is False
    for stage in ("pretrain", "assistant", "compress"):
        assert (repo / "live" / stage / "plots" / "metrics" / "val" / "f1.tsv").read_text() == "step\tf1\n"
    out = _sh(repo, "dvc", "plots", "show")
    assert "failed to load" not in out and "WARNING" not in out, out
    # no holdout: every labelled image was trained on or picked epochs, whatever train_on says
    for train_on in ("train", "train_val", "train_val_and_pseudo_labelled_test"):
        sets = ["-S", "prepare.holdout_fraction=0.0", "-S", f"student.train_on={train_on}"]
        out = _sh(repo, "dvc", "exp", "run", *sets)  # score is skipped where the model came out the same
        assert train_on != "train" or "no F1 on none: test/ is unlabelled and prepare.holdout_fraction is 0" in out
        head = json.loads((repo / "metrics" / "headline.json").read_text())
        assert head["f1"] is None and head["score"] is None and head["macs"] > 0, head
    assert "prepare.holdout_fraction is 0" in _sh(repo, "tinycls", "pareto", fails=True)


@pytest.mark.slow
def test_dvc_repro_end_to_end(tmp_path):
    # all data + pseudo-labelled test, so that the pseudo threshold changes what the student sees
    repo = _tiny_repo(tmp_path, train_on="train_val_and_pseudo_labelled_test", threshold=0.0)
    _sh(repo, "dvc", "repro")
    score = json.loads((repo / "metrics" / "score.json").read_text())
    assert {"macs", "params", "f1", "score"} <= set(score) and score["f1_split"] == "test"
    assert "failed to load" not in _sh(repo, "dvc", "plots", "show")  # the assistant is not trained
    assert (repo / "live" / "student" / "plots" / "metrics" / "val" / "f1.tsv").exists()
    rows = (repo / "artifacts" / "score" / "submission.csv").read_text().splitlines()
    assert rows[0] == "file,prediction" and len(rows) == 1 + 9
    assert "Data and pipelines are up to date" in _sh(repo, "dvc", "status")
    again = _sh(repo, "dvc", "repro")
    assert "Running stage" not in again
    # Finding 8 of the hardening issue: a spec edited in place reruns every stage that builds a
    # spec network (pretrain too, whose weights the student starts from), never the teacher
    spec = repo / "specs" / "nas.yaml"
    spec.write_text(spec.read_text() + "# edited\n")
    status = json.loads(_sh(repo, "dvc", "status", "--json"))
    edited = {s for s, cs in status.items() for c in cs if isinstance(c, dict) and "specs" in c.get("changed deps", {})}
    assert edited == {"check", "pretrain", "assistant", "student"}, status
    _sh(repo, "git", "checkout", "--", "specs")
    _sh(repo, "git", "add", "-A")
    _sh(repo, "git", "commit", "-qm", "baseline")

    # Done-when of the kd issue: switching the distillation reruns only what follows the teacher.
    out = _sh(repo, "dvc", "exp", "run", "-n", "true-label", "-S", "kd.mode=true_label")
    assert re.findall(r"Running stage '(\w+)'", out) == ["check", "student", "compress", "export", "score"]
    diff = json.loads(_sh(repo, "dvc", "metrics", "diff", "--json"))
    assert set(diff) == {"metrics/headline.json"}  # the headline alone; the detail files on request:
    diff = json.loads(_sh(repo, "dvc", "metrics", "diff", "--json", "--targets", "metrics/student.json"))
    assert diff["metrics/student.json"]["kd_alpha"] == {"old": None, "new": 0.3}  # numbers only in the diff
    # Done-when of the review issue: that experiment against the commit, as Markdown with images
    out = _sh(repo, "tinycls", "report", "true-label")
    folder = repo / "reports" / "true-label"
    md = (folder / "report.md").read_text()
    assert md in out and md.startswith("## tinycls: `true-label` against `HEAD`")
    old = json.loads(_sh(repo, "git", "show", "HEAD:metrics/headline.json"))
    new = json.loads((repo / "metrics" / "headline.json").read_text())
    row = f"| macro F1 (final model) | {old['f1']:.4f} | {new['f1']:.4f} | {new['f1'] - old['f1']:+.4f}"
    assert row in md, md
    assert f"| MACs | {old['macs']:,} | {new['macs']:,} | 0 |" in md
    assert "| `kd.mode` | none | true_label |" in md
    per_class = json.loads((repo / "metrics" / "score.json").read_text())["per_class_f1"]
    assert "**Per-class F1**, the 3 largest changes of 3" in md and all(f"| {c} |" in md for c in per_class)
    for image in ("confusion.png", "pareto.png"):
        assert f"]({image})" in md and (folder / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](curves/index.html)" in md and (folder / "curves" / "index.html").is_file()
    student = json.loads((repo / "metrics" / "student.json").read_text())
    assert student["kd_mode"] == "true_label" and student["kd_teachers"] == "teacher"
    assert student["init_transferred"] > 0 and student["teacher_outputs"] == "views"
    # an ensemble of teacher and assistant from params alone: the assistant is trained for it
    out = _sh(repo, "dvc", "exp", "run", "-S", "kd.mode=vanilla", "-S", "kd.teachers=[teacher,assistant]")
    assert re.findall(r"Running stage '(\w+)'", out) == ["check", "assistant", "student", "compress", "export", "score"]
    assert json.loads((repo / "metrics" / "assistant.json").read_text())["trained"] is True
    assert json.loads((repo / "metrics" / "student.json").read_text())["kd_teachers"] == "teacher+assistant"
    # Point 4 of the teacher issue: each knob reruns exactly its stage and what follows it
    # (experiments build on the workspace: the assistant stays in kd.teachers).
    out = _sh(repo, "dvc", "exp", "run", "-S", "pseudo.threshold=0.95")
    assert re.findall(r"Running stage '(\w+)'", out) == [
        "check",
        "pseudo",
        "assistant",
        "student",
        "compress",
        "export",
        "score",
    ]
    out = _sh(repo, "dvc", "exp", "run", "-S", "teacher.cutmix_prob=0.0")
    assert re.findall(r"Running stage '(\w+)'", out) == [
        "check",
        "teacher",
        "pseudo",
        "assistant",
        "student",
        "compress",
        "export",
        "score",
    ]
    # Done-when of the compression issue: another layer pruning reruns only compress and what reads it.
    out = _sh(repo, "dvc", "exp", "run", "-S", "compress.keep_blocks=[1,3,1]")
    assert re.findall(r"Running stage '(\w+)'", out) == ["check", "compress", "export", "score"]
    compress = json.loads((repo / "metrics" / "compress.json").read_text())
    assert compress["keep_blocks"] == [[0], [0, 1, 2], [0]] and compress["macs"] < compress["macs_before"]
    score = json.loads((repo / "metrics" / "score.json").read_text())
    assert score["model"] == "compress" and score["compression"] == "blocks [1, 3, 1]"
    assert score["macs"] == compress["macs"] and score["student_macs"] == compress["macs_before"]
    # Done-when of the export issue: INT8 calibration reruns only export and score, which lists
    # the shipped files' F1, bytes and latency beside MACs
    out = _sh(repo, "dvc", "exp", "run", "-S", "export.calibration_images=8")
    assert re.findall(r"Running stage '(\w+)'", out) == ["check", "export", "score"]
    assert json.loads((repo / "metrics" / "export.json").read_text())["calibration_images"] == 8
    for name in ("model.onnx", "model.int8.onnx"):
        assert (repo / "artifacts" / "export" / name).stat().st_size > 0
    shown = json.loads(_sh(repo, "dvc", "exp", "show", "--json"))
    exps = [e for row in shown for x in (row.get("experiments") or []) for e in x["revs"]]
    params = [e["data"]["params"]["params.yaml"]["data"] for e in exps]
    assert len(exps) == 6 and {p["kd"]["mode"] for p in params} == {"true_label", "vanilla"}
    # DVC shows the headline alone, every key of it
    assert all(set(e["data"]["metrics"]) == {"metrics/headline.json"} for e in exps)
    scores = [e["data"]["metrics"]["metrics/headline.json"]["data"] for e in exps]
    assert all(list(s) == list(HEADLINE) for s in scores)
    # the F1-against-MACs plot over those experiments (and the committed baseline)
    out = _sh(repo, "tinycls", "pareto")
    rows = (repo / "plots" / "pareto.csv").read_text().splitlines()
    assert len(rows) == 1 + 7 and (repo / "plots" / "pareto.png").stat().st_size > 0
    assert "blocks [1, 3, 1]" in out and "runs on the front" in out
    out = _sh(repo, "tinycls", "pareto", "--x", "latency", "--out", "plots/pareto_latency.png")
    assert "of 7 runs on the front" in out


@pytest.mark.parametrize("stage", ["check", "score"])
def test_a_stage_outside_the_environment_says_to_activate_it(stage):
    # `python -S` has no site-packages: what DVC's plain `python` is when .venv is not active
    r = subprocess.run([sys.executable, "-S", "-m", f"stages.{stage}"], cwd=ROOT, capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"Error: {sys.executable} has no tinycls, torch")
    assert "`. .venv/bin/activate`" in lines[0] and "`make run`" in lines[0]


def _check(tmp_path: Path, params: dict) -> str:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(ROOT / "specs", tmp_path / "specs", dirs_exist_ok=True)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    r = subprocess.run([sys.executable, "-m", "stages.check"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    return r.stderr


def test_check_names_every_key_of_params_yaml_given_a_wrong_type(tmp_path):
    """Every key at once, in one run of the check: a stage's keys beside its model and loop
    (teacher.max_per_class, train_on, allow_unmatched_init, the assistant's kd) included."""

    def wrong(v):
        return "yes" if isinstance(v, bool) else "x" if isinstance(v, (int, float, list, dict)) else 7

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    keys = [(s, k) for s, d in params.items() for k in d]
    out = _check(tmp_path, {s: {k: wrong(v) for k, v in d.items()} for s, d in params.items()})
    assert len(keys) > 150 and not [f"[{s}].{k}" for s, k in keys if f"[{s}].{k}" not in out], out


def test_check_names_every_bounded_key_out_of_range_at_once(tmp_path):
    from tinycls.config import BOUNDS

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    bounded = [(s, k) for s, d in params.items() for k, v in d.items() if k in BOUNDS and not isinstance(v, bool)]
    for s, k in bounded:
        lo, hi = BOUNDS[k]
        params[s][k] = (lo - 1 if isinstance(params[s][k], int) else lo - 0.5) if lo is not None else hi * 2
    out = _check(tmp_path, params)
    assert len(bounded) > 40 and "[score].batch_size: 0 must be >= 1" in out
    assert not [f"[{s}].{k}" for s, k in bounded if f"[{s}].{k}: " not in out], out
