"""Training stages on several processes (torchrun, gloo on CPU) through `dvc repro`: the ranks
train the same weights, those of one process at the same global batch, only rank 0 writes, and
an interrupted run resumes."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.test_pipeline import ROOT, _tiny_repo
from tests.test_stages import _set
from tinycls.distributed import weights_digest

# Imported by every Python process the test starts (PYTHONPATH): a torchrun worker (RANK set)
# logs each file it opens for writing, renames, removes or creates, to <TINYCLS_AUDIT>/<pid>.
AUDIT = """
import os, sys
if os.environ.get("TINYCLS_AUDIT") and "RANK" in os.environ:
    _log = open(os.path.join(os.environ["TINYCLS_AUDIT"], str(os.getpid())), "a", buffering=1)
    _rank = os.environ["RANK"]
    _writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def _hook(event, args):
        if event == "open" and args[0] is not None and not isinstance(args[0], int):
            mode, flags = args[1], args[2]
            if (mode and any(c in mode for c in "wax+")) or (mode is None and flags & _writes):
                _log.write(f"{_rank} {event} {os.path.abspath(os.fsdecode(args[0]))}\\n")
        elif event in ("os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree") and args:
            _log.write(f"{_rank} {event} {os.path.abspath(os.fsdecode(args[-3 if event == 'os.rename' else 0]))}\\n")

    sys.addaudithook(_hook)
"""


def _env(repo: Path, audit: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": f"{audit.parent / 'site'}:{repo / 'src'}",
        "DVC_NO_ANALYTICS": "1",
        "TINYCLS_AUDIT": str(audit),
    }


def _teacher(repo: Path, **values: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["teacher"].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _repro(repo: Path, audit: Path) -> str:
    r = subprocess.run(["dvc", "repro", "teacher"], cwd=repo, env=_env(repo, audit), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def _digests(out: str) -> dict[str, str]:
    """{rank: digest} from the line rank 0 prints after training on several processes."""
    line = re.search(r"weights sha256 by rank: (.*)", out)
    assert line, out
    return dict(pair.split() for pair in line.group(1).split(", "))


def _weights(repo: Path) -> dict[str, torch.Tensor]:
    return torch.load(repo / "artifacts/teacher/model.pt", weights_only=True)["state_dict"]


def _written(audit: Path, repo: Path) -> dict[str, set[str]]:
    """{rank: the repo's files it wrote}, bytecode caches aside."""
    found: dict[str, set[str]] = {}
    for log in audit.iterdir():
        for line in log.read_text().splitlines():
            rank, _, path = line.split(" ", 2)
            rel = os.path.relpath(path, repo)
            if not rel.startswith("..") and "__pycache__" not in rel:
                found.setdefault(rank, set()).add(rel)
    return found


@pytest.mark.slow
def test_a_training_stage_on_two_processes_through_dvc_repro(tmp_path):
    repo = _tiny_repo(tmp_path)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(AUDIT)
    audit = tmp_path / "audit"
    audit.mkdir()
    # a spec network at 32 px (BatchNorm over enough numbers to be well conditioned) and SGD:
    # AdamW would magnify float-order noise in weights whose gradient is zero (a bias before a BatchNorm)
    spec = dict(arch="nas:specs/nas.yaml", pretrained=False, weights="", input_size=32, optimizer="sgd", lr=0.01)
    _teacher(repo, **spec, epochs=1, batch_size=8, processes=2, sync_bn=True)
    out = _repro(repo, audit)
    ranks = _digests(out)
    assert list(ranks) == ["0", "1"] and ranks["0"] == ranks["1"], out
    two = _weights(repo)
    assert weights_digest(two) == ranks["0"]  # what rank 0 saved: the weights both ranks hold
    written = _written(audit, repo)
    assert "1" not in written, f"rank 1 wrote {written.get('1')}"
    assert {"artifacts/teacher/model.pt", "metrics/teacher.json"} <= written["0"], written
    assert any(p.startswith("live/teacher/") for p in written["0"])

    # one process, the same global batch of 8: the same weights up to float order
    _teacher(repo, processes=1)
    _repro(repo, audit)
    one = _weights(repo)
    assert two.keys() == one.keys()
    worst = max((two[k].double() - one[k].double()).abs().max().item() for k in one)
    assert worst < 1e-5, worst

    # Ctrl-C (SIGINT to the whole process group, as a terminal sends it) after an epoch is saved
    _teacher(repo, processes=2, epochs=6)
    state = repo / "resume" / "teacher" / "model.pt"
    proc = subprocess.Popen(["dvc", "repro", "teacher"], cwd=repo, env=_env(repo, audit), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while not state.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted: " + proc.communicate()[0]
    os.killpg(proc.pid, signal.SIGINT)
    stopped = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0 and state.is_file(), stopped
    done = torch.load(state, weights_only=True)["best"]["epochs_run"]
    assert 1 <= done < 6, stopped
    out = _repro(repo, audit)
    assert f"resuming after epoch {done} of 6" in out, out
    ranks = _digests(out)
    assert ranks["0"] == ranks["1"] and not state.exists()
    assert "1" not in _written(audit, repo)


# rank 1 of a torchrun run kills itself (SIGKILL, as the out-of-memory killer would) once epoch 1 is saved
DIE = """
import os, signal, threading, time
if os.environ.get("RANK") == "1" and os.environ.get("TINYCLS_DIE_AFTER"):
    def _die():
        while not os.path.exists(os.environ["TINYCLS_DIE_AFTER"]):
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=_die, daemon=True).start()
"""


@pytest.mark.slow
def test_a_rank_that_dies_stops_the_others_and_the_rerun_resumes(workdir):
    _set(workdir / "params.yaml", "teacher", epochs=4, processes=2)
    (workdir / "site").mkdir()
    (workdir / "site" / "sitecustomize.py").write_text(DIE)
    state = workdir / "resume" / "teacher" / "model.pt"
    env = {**os.environ, "PYTHONPATH": f"{workdir / 'site'}:{ROOT / 'src'}:{ROOT}", "TINYCLS_DIE_AFTER": str(state)}
    cmd = [sys.executable, "-m", "stages.launch", "2", "stages.teacher"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not state.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    seen = time.monotonic()
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - seen
    assert proc.returncode == 1 and state.is_file(), out + err
    # rank 0, waiting in a collective, is stopped by torchrun, or first sees the connection go
    said = r"Error: stages.teacher on 2 processes: (rank 0 \(exit status 1\), )?rank 1 \(signal SIGKILL\) stopped it"
    assert re.search(said, err) and "`dvc repro` resumes after the last finished epoch" in err, err
    assert took < 15, f"rank 0 took {took:.0f} s to stop"
    assert not (workdir / "metrics" / "teacher.json").exists()
    done = torch.load(state, weights_only=True)["best"]["epochs_run"]  # 1, or later on a slow machine
    del env["TINYCLS_DIE_AFTER"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and f"resuming after epoch {done} of 4" in r.stdout and done < 4, r.stdout + r.stderr
    ranks = _digests(r.stdout)
    assert ranks["0"] == ranks["1"] and json.loads((workdir / "metrics" / "teacher.json").read_text())["epochs"] == 4


def test_more_processes_than_devices_or_too_small_a_batch_is_refused_naming_both():
    from tinycls.distributed import available
    from tinycls.errors import InputError
    from tinycls.train import TrainConfig

    n, what = available("cpu")
    with pytest.raises(InputError, match=rf"processes: {n + 1}, but this machine has {n} {what}.*at most {n}"):
        TrainConfig(epochs=1, batch_size=64, processes=n + 1, device="cpu")
    with pytest.raises(InputError, match=r"batch_size: 3 is the batch of all 2 processes.*batch_size >= 4"):
        TrainConfig(epochs=1, batch_size=3, processes=2, device="cpu")
    r = subprocess.run([sys.executable, "-m", "stages.launch", "0", "stages.teacher"], cwd=ROOT, capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode == 1 and "PROCESSES a whole number >= 1" in r.stderr


def test_sync_bn_on_cpu_converts_batchnorm2d_in_place_and_refuses_other_norm_layers():
    from timm.layers import BatchNormAct2d

    from tinycls.distributed import SyncBatchNormCPU
    from tinycls.errors import InputError

    bn = torch.nn.BatchNorm2d(4)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), bn)
    weight = bn.weight
    SyncBatchNormCPU.convert(net)
    assert type(net[1]) is SyncBatchNormCPU and net[1].weight is weight  # the optimizer's tensors stay
    x = torch.randn(6, 3, 8, 8)
    net.eval()  # one process, or eval: exactly BatchNorm2d
    assert torch.equal(net(x), torch.nn.Sequential(net[0], bn.eval())(x))
    with pytest.raises(InputError, match=r"sync_bn: true on CPU .* BatchNormAct2d \(1\)\. Set sync_bn: false"):
        SyncBatchNormCPU.convert(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), BatchNormAct2d(4)))
