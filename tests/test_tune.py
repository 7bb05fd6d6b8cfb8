"""tinycls nas (tinycls.nas): the template's space, its stride bookkeeping, the MACs budget, the
study's storage (journal file, PostgreSQL), workers, and the outputs the pipeline takes."""

import dataclasses
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
from optuna.trial import FixedTrial, TrialState
from typer.testing import CliRunner

from tests.conftest import class_arrays
from tinycls.cli import app
from tinycls.errors import InputError
from tinycls.macs import count_macs
from tinycls.nas import config as nas_config
from tinycls.nas import front as nas_front
from tinycls.nas import search as nas_search
from tinycls.nas import space as nas_space
from tinycls.nas import study as nas_study
from tinycls.nas.config import NasConfig
from tinycls.specnet import build, load_spec, parse_spec

TINY = {  # params.yaml [nas] for 16 px, 3 classes, one quick epoch
    "trials": 2,
    "max_macs": 50_000_000,
    "input_sizes": [16],
    "head_channels": [64, 128, 64],
    "train_per_class": 40,
    "epochs": 1,
    "batch_size": 32,
    "startup_trials": 1,
}


def strides(spec: dict) -> list[int]:
    names = {"Conv": 2, "DWConv": 2, "InvertedResidualv2": 2, "InvertedResidualv3": 5}
    return [args[names[m]] for _, m, args in spec["backbone"] if m in names]


def slot(kind: str, i: int, stride: int, space: str) -> dict:
    """FixedTrial params of slot m{i}: a `kind` at its least channels, kernel 3, asked for `stride`."""
    p, ranges = f"m{i}", nas_config.SPACES[space]
    base = {p: kind, f"{p}/repeat": 1, f"{p}/stride": stride}
    if kind in ("Conv", "DWConv"):
        return {**base, f"{p}/out": ranges["conv_out"][i - 1][0], f"{p}/kernel": 3, f"{p}/act": "ReLU"}
    c = ranges["ir_out"][i - 1][0]
    if kind == "InvertedResidualv2":
        return {**base, f"{p}/v2_c": c, f"{p}/v2_t": 2}
    if kind == "InvertedResidualv3":
        return {**base, f"{p}/v3_k": 3, f"{p}/v3_t": 2.0, f"{p}/v3_c": c, f"{p}/v3_se": 0, f"{p}/v3_hs": 1}
    return {p: "Pass"}


def fixed(kinds: list[str], asked: list[int], space: str = "small", size: int = 32) -> FixedTrial:
    params = {"input_size": size, "head": 64}
    for i, (k, s) in enumerate(zip(kinds, asked, strict=True), start=1):
        params.update(slot(k, i, s, space))
    return FixedTrial(params)


def test_template_space_forces_m2_m4_and_m6_the_template_meant_to():
    cfg = NasConfig(space="template")
    kinds = ["Conv", "DWConv", "DWConv", "DWConv", "DWConv", "DWConv", "DWConv"]
    spec, _ = nas_space.sample(fixed(kinds, [1] * 7, "template"), cfg)
    # nothing asked to stride: m2 (1 by m2), m4 (2 by m4) and m6 (3 by m6) are made to
    assert strides(spec) == [1, 2, 1, 2, 1, 2, 1]


def test_pass_moves_a_forced_stride_to_the_next_slot():
    cfg = NasConfig(space="template")
    kinds = ["Conv", "Pass", "DWConv", "InvertedResidualv3", "Pass", "Pass", "InvertedResidualv2"]
    spec, _ = nas_space.sample(fixed(kinds, [1] * 7, "template"), cfg)
    assert strides(spec) == [1, 2, 2, 2]  # m3 owes m2's stride, m4 its own, m7 m6's


def test_small_space_stem_strides_and_at_most_max_strides():
    cfg = NasConfig(space="small")
    spec, _ = nas_space.sample(fixed(["DWConv"] + ["Conv"] * 6, [2] * 7), cfg)
    assert strides(spec) == [2, 2, 2, 2, 1, 1, 1]  # 32 px: at most 4 (a 2x2 map), then no stride asked
    assert nas_space.max_strides(32) == 4 and nas_space.max_strides(16) == 3 and nas_space.max_strides(224) == 5
    spec, _ = nas_space.sample(fixed(["Conv"] * 7, [1] * 7), cfg)
    assert strides(spec)[:4] == [2, 2, 1, 2]  # stem, m2, m4 forced


@pytest.mark.parametrize("space", ["small", "template"])
def test_random_samples_are_valid_networks(space):
    cfg = NasConfig(space=space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(60):
        trial = study.ask()
        raw, size = nas_space.sample(trial, cfg)
        spec = parse_spec(raw, "sampled")
        s = strides(spec)
        assert s.count(2) <= nas_space.max_strides(size)
        if len(s) == 7:  # no Pass: every stride the schedule asks for is made
            assert s.count(2) >= max(nas_config.SPACES[space]["strides_by"].values())
        assert spec["backbone"][0][1] in ("Conv", "DWConv")
        study.tell(trial, state=TrialState.PRUNED)


def test_fit_width_takes_the_widest_that_fits():
    raw, size = nas_space.sample(fixed(["Conv"] * 4 + ["Pass"] * 3, [1] * 4 + [1] * 3), NasConfig())
    wide = nas_space.fit_width(raw, size, NasConfig(max_macs=10**9), 10, "t")
    assert wide[0]["width_multiple"] == 1.0
    half_macs = count_macs(build(parse_spec({**raw, "width_multiple": 0.5}, "t"), 10), size)[0]
    spec, macs, _ = nas_space.fit_width(raw, size, NasConfig(max_macs=half_macs), 10, "t")
    assert spec["width_multiple"] == 0.5 and macs == half_macs < wide[1]
    spec, macs, _ = nas_space.fit_width(raw, size, NasConfig(max_macs=1000), 10, "t")
    assert spec["width_multiple"] == 0.25 and macs > 1000  # none fits: the smallest, for the caller to prune


def test_config_errors_name_the_key():
    with pytest.raises(InputError, match="sampler"):
        NasConfig(sampler="cmaes")
    with pytest.raises(InputError, match="space"):
        NasConfig(space="huge")
    with pytest.raises(InputError, match="head_channels"):
        NasConfig(head_channels=[64, 32, 8])
    with pytest.raises(InputError, match="input_sizes"):
        NasConfig(input_sizes=[4])


def make_cache(root: Path, n: int = 240, size: int = 16) -> Path:
    root.mkdir(parents=True)
    x, y = class_arrays(n, seed=0, size=size)
    vx, vy = class_arrays(60, seed=1, size=size)
    np.save(root / "train_images.npy", x)
    np.save(root / "train_labels.npy", y)
    np.save(root / "val_images.npy", vx)
    np.save(root / "val_labels.npy", vy)
    np.save(root / "test_images.npy", vx)  # never read: no test labels exist in a cache
    (root / "classes.json").write_text(json.dumps(["a", "b", "c"]))
    return root


def run_nas(tmp: Path, params: dict, *args: str) -> str:
    (tmp / "params.yaml").write_text(yaml.safe_dump({"nas": params}))
    r = CliRunner().invoke(
        app,
        [
            "nas", "--params", str(tmp / "params.yaml"), "--cache", str(tmp / "cache"), "--out",
            str(tmp / "spec.yaml"), "--out-dir", str(tmp / "nas"), "--plots", str(tmp / "plots"), *args,
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output + repr(r.exception)
    return r.output


def test_nas_writes_the_front_and_a_spec_the_pipeline_takes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_cache(tmp_path / "cache")
    mine = tmp_path / "nas" / "specs"  # as with `--out-dir .`: the repository's own specs/
    mine.mkdir(parents=True)
    (mine / "nas.yaml").write_text("head: 64\n")
    (mine / "trial_99.yaml").write_text("# mine\n")
    (mine / "trial_98.yaml").write_text("# Found by `tinycls nas` (study 'tinycls', trial 98): left the front\n")
    out = run_nas(tmp_path, TINY)
    assert (mine / "nas.yaml").read_text() == "head: 64\n" and (mine / "trial_99.yaml").read_text() == "# mine\n"
    assert not (mine / "trial_98.yaml").exists()  # a spec the search wrote, for a trial no longer on the front
    assert "chosen: trial" in out and "dvc exp run -S student.arch=nas:" in out
    rows = list(__import__("csv").DictReader(open(tmp_path / "nas" / "trials.csv")))
    assert len(rows) == 2 and all(0 <= float(r["val_f1"]) <= 1 for r in rows)
    best = max((r for r in rows if r["pareto"] == "True"), key=lambda r: float(r["val_f1"]))
    spec = load_spec(tmp_path / "spec.yaml")  # the file student.arch: nas:... reads
    assert count_macs(build(spec, 3), 16)[0] == int(best["macs"])
    macs = CliRunner().invoke(app, ["macs", f"nas:{tmp_path / 'spec.yaml'}", "--size", "16", "--classes", "3"])
    assert macs.output.strip().splitlines()[-1] == best["macs"]
    assert (tmp_path / "plots" / "nas_pareto.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "nas_pareto.csv").is_file() and (tmp_path / "nas" / "pareto.md").is_file()
    assert list((tmp_path / "nas" / "specs").glob("trial_*.yaml"))
    # a rerun continues the study: two trials already, nothing new; --trials 3 adds one
    run_nas(tmp_path, TINY)
    assert len(list(open(tmp_path / "nas" / "trials.csv"))) == 3
    run_nas(tmp_path, TINY, "--trials", "3")
    assert len(list(open(tmp_path / "nas" / "trials.csv"))) == 4
    study = nas_study.open_study(NasConfig(**TINY), nas_study.open_storage("", tmp_path / "nas" / "journal.log"))
    specs = [json.dumps(t.user_attrs["spec"]) for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert len(set(specs)) == 3  # the rerun's sampler continued the sequence, not repeated it


def test_a_study_refuses_other_settings(tmp_path):
    make_cache(tmp_path / "cache")
    nas_search.search(NasConfig(**TINY), tmp_path / "cache", tmp_path / "nas")
    with pytest.raises(InputError, match="'tinycls'.*epochs 1 -> 2.*another name"):
        nas_search.search(NasConfig(**{**TINY, "epochs": 2}), tmp_path / "cache", tmp_path / "nas")
    nas_search.search(
        NasConfig(**{**TINY, "trials": 3, "workers": 1, "timeout_min": 9.0}), tmp_path / "cache", tmp_path / "nas"
    )


def test_a_study_is_reproducible(tmp_path):
    make_cache(tmp_path / "cache")
    cfg = NasConfig(**{**TINY, "trials": 2})
    a = nas_front.results(nas_search.search(dataclasses.replace(cfg, study="a"), tmp_path / "cache", tmp_path / "nas"))
    b = nas_front.results(nas_search.search(dataclasses.replace(cfg, study="b"), tmp_path / "cache", tmp_path / "nas"))
    assert [(r.spec, r.val_f1, r.macs) for r in a] == [(r.spec, r.val_f1, r.macs) for r in b]


def test_a_budget_nothing_fits_is_an_error(tmp_path, monkeypatch):
    make_cache(tmp_path / "cache")
    monkeypatch.setattr(nas_search, "MAX_REJECTED", 5)
    with pytest.raises(InputError, match="max_macs 100"):
        nas_search.search(NasConfig(**{**TINY, "max_macs": 100}), tmp_path / "cache", tmp_path / "nas")


def test_missing_cache_says_to_prepare(tmp_path):
    with pytest.raises(InputError, match="dvc repro prepare"):
        nas_search.search(NasConfig(**TINY), tmp_path / "nothing", tmp_path / "nas")


def test_a_study_with_other_objectives_is_refused(tmp_path):
    storage = nas_study.open_storage(str(tmp_path / "j.log"), tmp_path / "unused")
    optuna.create_study(storage=storage, study_name="other", direction="minimize")
    with pytest.raises(InputError, match="'other'.*another search's study"):
        nas_study.open_study(NasConfig(study="other"), storage)


def test_an_unreachable_storage_fails_fast_without_its_password():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://tinycls:s3cret@127.0.0.1:{port}/study"
    t0 = time.perf_counter()
    with pytest.raises(InputError) as e:
        nas_study.open_storage(url, Path("unused"))
    assert time.perf_counter() - t0 < 10
    assert f"127.0.0.1:{port}" in str(e.value) and "s3cret" not in str(e.value)
    assert "OperationalError" in str(e.value)  # the server was tried (its driver is installed), and refused


def test_a_password_in_the_storage_url_is_refused_by_check_and_by_the_cli_without_showing_it(tmp_path):
    root = Path(__file__).resolve().parents[1]
    url = "postgresql://ana:s3cret@db.example:5432/tinycls"
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["nas"]["storage"] = url
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(root / "specs", tmp_path / "specs")
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}:{root}"}
    check = subprocess.run(
        [sys.executable, "-m", "stages.check"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    out = check.stdout + check.stderr
    assert check.returncode == 2 and "[nas].storage: the URL holds a password" in out and "~/.pgpass" in out, out
    cli = Path(sys.executable).parent / "tinycls"
    (tmp_path / "empty.yaml").write_text("{}\n")
    nas = subprocess.run(
        [cli, "nas", "--storage", url, "--params", tmp_path / "empty.yaml"], capture_output=True, text=True
    )
    assert nas.returncode == 2 and "PGPASSWORD" in nas.stdout + nas.stderr, nas.stdout + nas.stderr
    assert "s3cret" not in out + nas.stdout + nas.stderr
    assert not nas_config._password("postgresql://ana@db.example/tinycls") and nas_config._password("mysql://a:b@h:x/d")


def test_a_dead_workers_running_trial_is_marked_failed_and_its_network_queued_again(tmp_path):
    study = nas_study.open_study(NasConfig(), nas_study.open_storage(str(tmp_path / "j.log"), tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead, alive, elsewhere, older, unclaimed = study.ask(), study.ask(), study.ask(), study.ask(), study.ask()
    for t in (dead, alive, elsewhere, older):
        t.suggest_int("head", 64, 512, step=32)
    # elsewhere: another machine (or container) with this hostname, whose live worker has a pid
    # that is free here; only the RDB heartbeat may fail its trial
    for t, pid, space in (
        (dead, gone.pid, nas_study.pid_space()),
        (alive, os.getpid(), nas_study.pid_space()),
        (elsewhere, gone.pid, "another-boot-id/pid:[4026531836]"),
    ):
        t.set_user_attr("host", socket.gethostname())
        t.set_user_attr("pid_space", space)
        t.set_user_attr("pid", pid)
    older.set_user_attr("host", socket.gethostname())  # a trial of a tinycls that recorded no pid_space
    older.set_user_attr("pid", gone.pid)
    unclaimed.set_user_attr("pid_space", nas_study.pid_space())  # its worker has not written its pid yet
    assert nas_study.fail_dead_trials(study) == 2
    assert nas_study.fail_dead_trials(study) == 0  # failed once, queued once
    states = {t.number: t.state for t in study.get_trials()}
    assert states[older.number] == TrialState.FAIL
    assert states[dead.number] == TrialState.FAIL and states[alive.number] == TrialState.RUNNING
    assert states[elsewhere.number] == TrialState.RUNNING and states[unclaimed.number] == TrialState.RUNNING
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert [Retry.retried_trial_number(t) for t in queued] == [dead.number, older.number]
    assert queued[0].params == study.get_trials()[dead.number].params and "pid" not in queued[0].user_attrs
    # a network whose workers keep dying is queued again MAX_RETRY times, then left failed
    for _ in range(nas_config.MAX_RETRY + 1):
        t = study.ask()  # the queue first, oldest first
        t.set_user_attr("pid_space", nas_study.pid_space())
        t.set_user_attr("pid", gone.pid)
        assert nas_study.fail_dead_trials(study) == 1
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1  # older's network, once more
    chain = [t for t in study.get_trials() if Retry.retried_trial_number(t) == dead.number]
    assert len(chain) == nas_config.MAX_RETRY and Retry.retry_history(chain[-1]) == [dead.number, chain[0].number]


def test_a_queued_retry_builds_the_same_network_and_a_failed_trial_is_not_retried(tmp_path):
    cfg = NasConfig(space="template")  # conditional parameters: each slot's kind decides the others
    study = nas_study.open_study(cfg, nas_study.open_storage(str(tmp_path / "j.log"), tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for _ in range(8):
        t = study.ask()
        t.set_user_attr("pid_space", nas_study.pid_space())
        t.set_user_attr("pid", gone.pid)
        first = nas_space.sample(t, cfg)
        assert nas_study.fail_dead_trials(study) == 1
        again = study.ask()
        assert Retry.retried_trial_number(study.get_trials()[again.number]) == t.number
        assert nas_space.sample(again, cfg) == first and again.params == t.params
        study.tell(again, state=TrialState.PRUNED)

    def error(trial):
        raise RuntimeError("a bug in training")

    study.optimize(error, n_trials=1, catch=(RuntimeError,))  # Optuna fails it: no dead worker, no retry
    assert nas_study.settle(study) == 0 and nas_study.queued(study) == 0


def test_two_workers_share_a_journal_study(tmp_path):
    make_cache(tmp_path / "cache")
    cfg = NasConfig(**{**TINY, "trials": 6, "workers": 2, "epochs": 2})
    study = nas_search.search(cfg, tmp_path / "cache", tmp_path / "nas")
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert 6 <= len(done) <= 7  # a worker may finish the trial it started as the other reached 6
    pids = [t.user_attrs["pid"] for t in done]
    assert len(set(pids)) == 2 and os.getpid() not in pids  # both workers trained, in their own processes
    assert not study.get_trials(states=(TrialState.RUNNING,))


KILLED = {**TINY, "epochs": 3, "train_per_class": 200}  # a trial trains long enough to be killed in it


def nas_worker(tmp: Path, name: str, storage: str) -> subprocess.Popen:
    """`tinycls nas` in a process of its own, as a user starts a worker (params: tmp/params.yaml)."""
    cmd = [
        sys.executable, "-m", "tinycls.cli", "nas", "--storage", storage,
        "--params", str(tmp / "params.yaml"), "--cache", str(tmp / "cache"),
        "--out", str(tmp / f"{name}.yaml"), "--out-dir", str(tmp / name), "--plots", str(tmp / name),
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_in_a_trial(worker: subprocess.Popen, study_name: str, storage) -> int:
    """SIGKILL `worker` while it trains a trial (its network sampled and counted); the trial's number."""
    deadline = time.time() + 120
    while time.time() < deadline and worker.poll() is None:
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:  # not created yet
            time.sleep(0.2)
            continue
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        victim = next(
            (t.number for t in running if t.user_attrs.get("pid") == worker.pid and "macs" in t.user_attrs), None
        )
        if victim is not None:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            return victim
        time.sleep(0.05)
    pytest.fail(f"the worker never started a trial: {worker.communicate()[0] if worker.poll() is not None else ''}")


def assert_retried(study, victim: int, reason: str, trials: int) -> optuna.trial.FrozenTrial:
    """The killed trial failed, and a COMPLETE trial retried its network; the study holds `trials`
    trained trials and none RUNNING or queued. The retry."""
    by_number = {t.number: t for t in study.get_trials()}
    killed = by_number[victim]
    assert killed.state == TrialState.FAIL
    again = [t for t in by_number.values() if Retry.retried_trial_number(t) == victim]
    assert len(again) == 1 and again[0].state == TrialState.COMPLETE, again
    assert again[0].params == killed.params and again[0].user_attrs["spec"] == killed.user_attrs["spec"]
    assert again[0].user_attrs["retries"] == victim and reason in again[0].user_attrs["retry_reason"]
    assert again[0].user_attrs["worker_id"] != killed.user_attrs["worker_id"]
    assert len([t for t in by_number.values() if t.state == TrialState.COMPLETE]) >= trials
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    return again[0]


def test_a_journal_workers_killed_trial_is_retried_by_the_other_worker(tmp_path):
    make_cache(tmp_path / "cache", n=600)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"nas": {**KILLED, "trials": 4, "study": "j"}}))
    journal = str(tmp_path / "journal.log")
    a, b = nas_worker(tmp_path, "a", journal), nas_worker(tmp_path, "b", journal)
    victim = kill_in_a_trial(a, "j", nas_study.open_storage(journal, Path("unused")))
    assert b.poll() is None, "b stopped before a was killed"
    out_b, _ = b.communicate(timeout=300)
    assert b.returncode == 0, out_b
    assert f"trial {victim}: its worker (pid {a.pid}) is gone; marked failed, its network is queued again" in out_b
    study = optuna.load_study(study_name="j", storage=nas_study.open_storage(journal, Path("unused")))
    again = assert_retried(study, victim, f"pid {a.pid}) is gone", 4)
    assert again.user_attrs["pid"] == b.pid  # the surviving worker trained it, in the same run


# --- PostgreSQL: a real server, started here as an unprivileged user --------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A PostgreSQL server in a temporary folder on a free port (Debian's `postgresql` package;
    `make test` installs it as root). It refuses to run as root, so as root it runs as the
    package's `postgres` user."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
    if not found[-1]:
        pytest.fail("initdb not found: install PostgreSQL (`apt-get install postgresql`; `make test` does as root)")
    bin_dir = Path(found[-1]).parent
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="tinycls-pg-"))
    if as_user:
        shutil.chown(root, "postgres")
    port = _free_port()
    data, log = root / "data", root / "log"

    def pg(*cmd: str) -> None:
        r = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=60)
        if r.returncode:
            server_log = log.read_text()[-2000:] if log.is_file() else ""
            pytest.fail(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}{r.stderr}\n{server_log}")

    try:
        pg(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "start", "-o",
           f"-p {port} -k {root} -c listen_addresses=127.0.0.1")  # fmt: skip
        pg(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "study")
        yield f"postgresql://postgres@127.0.0.1:{port}/study"  # trust: no password, as with ~/.pgpass
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_a_postgresql_study_and_retry_a_killed_ones_trial(tmp_path, postgres_url):
    make_cache(tmp_path / "cache", n=600)
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"nas": {**KILLED, "trials": 6, "heartbeat_s": 2, "study": "pg"}})
    )
    a, b = nas_worker(tmp_path, "a", postgres_url), nas_worker(tmp_path, "b", postgres_url)
    storage = nas_study.open_storage(postgres_url, Path("unused"))
    victim = kill_in_a_trial(a, "pg", storage)
    killed = time.time()
    out_b, _ = b.communicate(timeout=300)
    assert b.returncode == 0, out_b
    # the heartbeat (a trial silent for 3 x heartbeat_s) fails it and queues its network again,
    # from the first worker that starts a trial after that: b when it was still searching, else
    # the user's rerun; never the pid check (c runs fail_stale_trials first, after the grace period)
    time.sleep(max(0.0, killed + 3 * 2 + 1 - time.time()))
    last = nas_worker(tmp_path, "c", postgres_url)
    out_c, _ = last.communicate(timeout=300)
    assert last.returncode == 0, out_c
    study = optuna.load_study(study_name="pg", storage=storage)
    again = assert_retried(study, victim, "no heartbeat for 6 s", 6)
    assert f"trial {victim}: its worker sent no heartbeat for 6 s; marked failed" in out_b + out_c
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert {t.user_attrs["pid"] for t in done} <= {a.pid, b.pid, last.pid} and again.user_attrs["pid"] != a.pid
    assert sum(t.user_attrs["pid"] == b.pid for t in done) >= 1
