"""Architecture search, the competition template's way (`tinycls nas`): Optuna samples a network
from the template's space of seven slots, each a module kind with its repeat, channels, kernel,
stride, expansion, squeeze-excite and activation; a network over the MACs budget is pruned
before it trains; the others get a short proxy training on the prepared cache (a per-class
subset of train, a few epochs, plain cross-entropy) and report (validation macro F1, MACs), the
two objectives of a multi-objective study. The Pareto front becomes a table, a plot and spec
files that `student.arch: nas:<file>` takes.

The study lives in a storage so that it survives an interruption (a rerun continues it, up to
`trials` trained trials) and so that several workers share it: Optuna's journal file (the
default, no server; workers on one machine) or an RDB URL (PostgreSQL: workers on many
machines). A worker that dies mid-trial leaves its trial RUNNING; the next run on this machine
marks it failed (its process is gone), and an RDB storage's heartbeat lets the other workers do
so anywhere.

Test labels are never read: the proxy trains on train and scores on val.
"""

import math
import os
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tinycls.config import one_of
from tinycls.errors import InputError

OBJECTIVES = ("val_f1", "macs")  # maximize, minimize
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "nsga2", "random")
KINDS = ("Conv", "DWConv", "InvertedResidualv2", "InvertedResidualv3", "Pass")
ACTS = ("ReLU", "Hardswish")
SLOTS = 7
# The spaces: the template's own per-slot ranges (output channels of Conv/DWConv, step 16 from
# 16, and of the inverted residuals, step 8), made for about 5M MACs at 96-224 px; and `small`,
# the same structure scaled to a budget of about 250k MACs at 32 px (the quick start), where the
# template's ranges put none of 1,400 random samples under the budget even at width 0.125. In
# `small` the stem (m1) strides and does not repeat, and downsampling comes one slot earlier:
# one stride 2 by m1, two by m2, three by m4 (of 32 px: 16, 8, 4). With the template's ranges
# and schedule a stem repeated at full resolution alone costs ~240k MACs.
# `strides_by`: slot -> stride-2 layers there must be by that slot. The template forced m2 and m4;
# its line meant to force m6 set m4's stride after m4 was built, so m6 was never forced; here it
# is. A Pass slot cannot stride: the duty moves to the next slot that is not Pass.
SPACES: dict[str, dict[str, Any]] = {
    "template": {
        "conv_out": ((16, 64), (16, 128), (16, 128), (16, 256), (16, 256), (16, 512), (128, 1024)),
        "ir_out": ((16, 32), (8, 32), (8, 40), (8, 64), (16, 80), (16, 128), (16, 160)),
        "m1_repeat": 3,
        "strides_by": {2: 1, 4: 2, 6: 3},
    },
    "small": {
        "conv_out": ((8, 32), (8, 48), (8, 64), (16, 64), (16, 96), (16, 128), (32, 128)),
        "ir_out": ((8, 24), (8, 32), (8, 40), (16, 48), (16, 64), (16, 80), (24, 96)),
        "m1_repeat": 1,
        "strides_by": {1: 1, 2: 2, 4: 3},
    },
}
# what a trial's result depends on: a study refuses to continue with other values
SETTINGS = (
    "space", "max_macs", "input_sizes", "width_multiples", "head_channels", "train_per_class", "val_per_class",
    "epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "hflip", "translate", "seed",
)  # fmt: skip
MAX_REJECTED = 2000  # sampled networks pruned in a row (over budget, or not running) before giving up
MAX_STRIDES = 5  # the template's; also no map below 2x2 (tinycls.tune.max_strides)


@dataclass(frozen=True)
class NasConfig:
    """params.yaml [nas]: the search's space, proxy training and study."""

    trials: int = 100  # trained trials in the study; a rerun continues up to this many
    timeout_min: float = 55.0  # no new trial starts after this many minutes of this run
    max_macs: int = 256392  # trials over this are pruned before training (the default student's MACs)
    input_sizes: list[int] = field(default_factory=lambda: [32])  # px, searched when more than one
    space: str = "small"  # small (about 250k MACs at 32 px) | template (its ranges: ~5M MACs, 96+ px)
    # the network's width multiple: the largest of these whose network fits max_macs (not sampled)
    width_multiples: list[float] = field(default_factory=lambda: [1.0, 0.75, 0.5, 0.375, 0.25])
    head_channels: list[int] = field(default_factory=lambda: [64, 512, 32])  # low, high, step of the 1x1 conv
    train_per_class: int = 1000  # proxy training images per class (seeded subset of train)
    val_per_class: int = 0  # validation images per class that score a trial; 0 = all of val
    epochs: int = 8
    batch_size: int = 64
    lr: float = 5.0e-3
    weight_decay: float = 5.0e-4
    label_smoothing: float = 0.1
    hflip: bool = True
    translate: float = 0.1
    sampler: str = "tpe"  # tpe (multi-objective TPE) | nsga2 | random
    startup_trials: int = 20  # random trials before the sampler models the space (the template's 20)
    seed: int = 0  # the sampler's (worker k: seed + k) and every proxy training's
    study: str = "tinycls"
    storage: str = ""  # '' = journal file artifacts/nas/journal.log; a path = a journal file; an RDB URL
    workers: int = 1  # processes on this machine sharing the study
    heartbeat_s: int = 30  # RDB storage: a trial silent this long x 3 is marked failed by the others
    device: str = "auto"

    def __post_init__(self) -> None:
        one_of("sampler", self.sampler, SAMPLERS)
        one_of("space", self.space, SPACES)
        one_of("device", self.device, ("auto", "cpu", "cuda"))
        for name in ("trials", "epochs", "batch_size", "train_per_class", "workers", "heartbeat_s", "max_macs"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: {getattr(self, name)} must be >= 1.")
        if self.val_per_class < 0 or self.startup_trials < 0:
            raise InputError("val_per_class and startup_trials must be >= 0.")
        if self.timeout_min <= 0 or self.lr <= 0:
            raise InputError(f"timeout_min ({self.timeout_min}) and lr ({self.lr}) must be > 0.")
        if not self.input_sizes or any(s < 8 for s in self.input_sizes):
            raise InputError(f"input_sizes: {self.input_sizes} must list sides >= 8 px.")
        if not self.width_multiples or any(not 0 < w <= 4 for w in self.width_multiples):
            raise InputError(f"width_multiples: {self.width_multiples} must list numbers in (0, 4].")
        lo_hi_step = self.head_channels
        if len(lo_hi_step) != 3 or not 8 <= lo_hi_step[0] <= lo_hi_step[1] or lo_hi_step[2] < 1:
            raise InputError(f"head_channels: {lo_hi_step} must be [low, high, step] with 8 <= low <= high, step >= 1.")
        if not self.study or "/" in self.study:
            raise InputError(f"study: {self.study!r} must be a non-empty name without '/'.")


def max_strides(input_size: int) -> int:
    """Stride-2 slots allowed: the template's 5, fewer when the map would fall below 2x2."""
    return max(1, min(MAX_STRIDES, int(math.log2(input_size)) - 1))


def sample(trial: Any, cfg: NasConfig) -> tuple[dict[str, Any], int]:
    """A spec (tinycls.nas format, before parse_spec; width_multiple 1.0) and an input size from
    the template's space (`cfg.space`'s ranges)."""
    space = SPACES[cfg.space]
    size = trial.suggest_categorical("input_size", list(cfg.input_sizes))
    top, strides, owed = max_strides(size), 0, 0
    backbone = []
    for i in range(1, SLOTS + 1):
        p = f"m{i}"
        kind = trial.suggest_categorical(p, list(KINDS[:2]) if i == 1 else list(KINDS))
        owed = max(owed, space["strides_by"].get(i, 0) - strides)  # strides this slot or the next ones must make
        if kind == "Pass":
            continue
        repeat = trial.suggest_int(f"{p}/repeat", 1, space["m1_repeat"] if i == 1 else 3)
        if strides >= top:
            stride = 1
        elif owed > 0:  # forced: not a parameter, so the sampler models only what has an effect
            stride = 2
        else:
            stride = trial.suggest_int(f"{p}/stride", 1, 2)
        if stride == 2:
            strides, owed = strides + 1, max(owed - 1, 0)
        if kind in ("Conv", "DWConv"):
            lo, hi = space["conv_out"][i - 1]
            out = trial.suggest_int(f"{p}/out", lo, hi, step=16 if lo % 16 == 0 else 8)
            kernel = 3 if i == 1 else trial.suggest_int(f"{p}/kernel", 1, 5, step=2)
            act = trial.suggest_categorical(f"{p}/act", list(ACTS))
            args = [out, kernel, stride, None, 1, act] if kind == "Conv" else [out, kernel, stride, None, act]
        elif kind == "InvertedResidualv2":
            lo, hi = space["ir_out"][i - 1]
            args = [trial.suggest_int(f"{p}/v2_c", lo, hi, step=8), trial.suggest_int(f"{p}/v2_t", 1, 6), stride]
        else:
            lo, hi = space["ir_out"][i - 1]
            args = [
                trial.suggest_int(f"{p}/v3_k", 3, 5, step=2),
                round(trial.suggest_float(f"{p}/v3_t", 1.0, 6.0, step=0.1), 1),
                trial.suggest_int(f"{p}/v3_c", lo, hi, step=8),
                trial.suggest_categorical(f"{p}/v3_se", [0, 1]),
                trial.suggest_categorical(f"{p}/v3_hs", [0, 1]),
                stride,
            ]
        backbone.append([repeat, kind, args])
    lo, hi, step = cfg.head_channels
    head = trial.suggest_int("head", lo, hi, step=step)
    return {"depth_multiple": 1.0, "width_multiple": 1.0, "backbone": backbone, "head": head}, size


def fit_width(raw: dict[str, Any], size: int, cfg: NasConfig, num_classes: int, source: str) -> tuple[dict, int, int]:
    """The sampled network at the largest of `cfg.width_multiples` within `cfg.max_macs`: (the
    parsed spec, MACs, params); at the smallest width when none fits (the caller prunes it).

    Raises:
        InputError: the network does not run at `size` (a kernel larger than its map, ...).
    """
    from tinycls.macs import count_macs
    from tinycls.nas import build, check_input, parse_spec

    for k, width in enumerate(sorted(cfg.width_multiples, reverse=True)):
        spec = parse_spec({**raw, "width_multiple": float(width)}, source)
        if k == 0:
            check_input(spec, size, source)
        macs, params = count_macs(build(spec, num_classes), size)
        if macs <= cfg.max_macs:
            break
    return spec, macs, params


def redact(url: str) -> str:
    """An RDB URL without its password (for messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def is_rdb(storage: str) -> bool:
    return "://" in storage


def open_storage(storage: str, default: Path, heartbeat_s: int = 30) -> Any:
    """Optuna storage: a journal file (`storage` empty: `default`; or a path) or an RDB URL.

    Raises:
        InputError: an unreachable or refused RDB, within seconds, naming the URL without its
            password; a journal file in a folder that cannot be created.
    """
    import optuna

    if not is_rdb(storage):
        path = Path(storage) if storage else default
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"storage {path}: cannot create its folder ({e}); give a writable path.") from None
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        # the open(O_EXCL) lock: works where symlinks do not (some network and Windows folders)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if storage.startswith(("postgres", "mysql")):  # fail in seconds, not after the OS's TCP timeout
        engine_kwargs["connect_args"] = {"connect_timeout": 5}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
            return optuna.storages.RDBStorage(
                storage, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s, grace_period=3 * heartbeat_s
            )
    except Exception as e:  # sqlalchemy's OperationalError, ArgumentError, a missing driver, ...
        first = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(
            f"storage {redact(storage)}: cannot open it ({type(e).__name__}: {first[:200]}); check the host, port, "
            "user and database, and that the server is running (README, 'Architecture search')."
        ) from None


def _sampler(cfg: NasConfig, worker: int, existing: int = 0) -> Any:
    """The sampler of worker `worker` joining a study of `existing` trials: seeded from all three,
    so a rerun continues the sequence instead of repeating the networks it already tried, and a
    fresh single-worker study is reproducible."""
    import optuna

    seed = cfg.seed + worker + 100_003 * existing
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(cfg.startup_trials, 2))
    with warnings.catch_warnings():  # multivariate / group are "experimental" since Optuna 2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # group: the space is conditional (a slot's kind decides its other parameters)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.startup_trials, multivariate=True, group=True)


def open_study(cfg: NasConfig, storage: Any, worker: int = 0, where: str = "") -> Any:
    """The study `cfg.study` in `storage`, created when missing.

    Raises:
        InputError: a study of that name with other objectives or directions.
    """
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            storage=storage,
            study_name=cfg.study,
            directions=list(DIRECTIONS),
            sampler=_sampler(cfg, worker),
            load_if_exists=True,
        )
    study.sampler = _sampler(cfg, worker, len(study.get_trials(deepcopy=False)))
    directions = [d.name.lower() for d in study.directions]
    names = study.user_attrs.get("objectives")
    if directions != list(DIRECTIONS) or (names is not None and list(names) != list(OBJECTIVES)):
        raise InputError(
            f"study {cfg.study!r} in {where or 'the storage'} has objectives {names or '?'} ({', '.join(directions)}), "
            f"not {list(OBJECTIVES)} (maximize, minimize): another search's study. Give another name "
            "(`tinycls nas --study NAME`, or params.yaml [nas].study)."
        )
    if names is None:
        study.set_user_attr("objectives", list(OBJECTIVES))
    settings = {k: getattr(cfg, k) for k in SETTINGS}
    recorded = study.user_attrs.get("settings")
    if recorded is None:
        study.set_user_attr("settings", settings)
    elif recorded != settings:
        changed = ", ".join(
            f"{k} {recorded.get(k)!r} -> {settings[k]!r}" for k in SETTINGS if recorded.get(k) != settings[k]
        )
        raise InputError(
            f"study {cfg.study!r} in {where or 'the storage'} was searched with other settings ({changed}); its "
            "trials would not compare with new ones. Give the new search another name (`tinycls nas --study NAME`, "
            "or params.yaml [nas].study), or put the settings back."
        )
    return study


def fail_dead_trials(study: Any) -> int:
    """Mark failed the RUNNING trials whose worker process on this machine is gone (killed
    mid-trial); their number. Trials of other machines are left to the RDB heartbeat."""
    from optuna.trial import TrialState

    host, n = socket.gethostname(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("host") != host or _alive(int(t.user_attrs.get("pid", -1))):
            continue
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)  # another worker may be first
        print(f"trial {t.number}: its worker (pid {t.user_attrs.get('pid')}) is gone; marked failed")
        n += 1
    return n


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Data:
    classes: list[str]
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]


def check_cache(cache: Path) -> None:
    """Raises MissingInput when the prepared cache the search trains on is not there."""
    from tinycls.errors import MissingInput

    need = [
        cache / n for n in ("classes.json", "train_images.npy", "train_labels.npy", "val_images.npy", "val_labels.npy")
    ]
    if missing := [str(p) for p in need if not p.is_file()]:
        raise MissingInput(
            f"{', '.join(missing)}: not found; run `dvc repro prepare` first (the search trains on its cache)."
        )


def load_data(cache: Path, cfg: NasConfig) -> Data:
    """The proxy's subset of the prepared cache: `train_per_class` seeded images per class of
    train, and val (capped at `val_per_class` when set); only those rows are read. Never the
    test split.

    Raises:
        MissingInput: no prepared cache (run `dvc repro prepare`).
    """
    from tinycls.data import cap_per_class
    from tinycls.prepare import load_classes, load_split

    check_cache(cache)
    (tx, ty), (vx, vy) = load_split(cache, "train"), load_split(cache, "val")
    keep = cap_per_class(ty, cfg.train_per_class, cfg.seed)
    vkeep = cap_per_class(vy, cfg.val_per_class, cfg.seed)
    return Data(list(load_classes(cache)), (tx[keep], ty[keep]), (vx[vkeep], vy[vkeep]))


def objective(cfg: NasConfig, data: Data, log: Callable[[str], None] = print) -> Callable[[Any], tuple[float, int]]:
    """The trial function: sample, check, count, prune over budget, train the proxy, evaluate."""

    def run(trial: Any) -> tuple[float, int]:
        import optuna
        import torch

        from tinycls.checkpoint import checkpoint_meta
        from tinycls.nas import build
        from tinycls.train import TrainConfig, fit, seed_everything

        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        raw, size = sample(trial, cfg)
        try:
            spec, macs, params = fit_width(raw, size, cfg, len(data.classes), f"trial {trial.number}")
        except InputError as e:  # e.g. a kernel larger than its map: not a network
            trial.set_user_attr("rejected", str(e)[:300])
            raise optuna.TrialPruned(str(e)) from None
        trial.set_user_attr("spec", spec)
        trial.set_user_attr("width_multiple", spec["width_multiple"])
        trial.set_user_attr("macs", macs)
        trial.set_user_attr("params", params)
        if macs > cfg.max_macs:
            trial.set_user_attr("rejected", f"{macs} MACs > max_macs {cfg.max_macs}")
            raise optuna.TrialPruned(f"{macs:,} MACs over the budget")
        t0 = time.perf_counter()
        tc = TrainConfig(
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            label_smoothing=cfg.label_smoothing,
            hflip=cfg.hflip,
            translate=cfg.translate,
            seed=cfg.seed,
            device=cfg.device,
        )
        seed_everything(cfg.seed)
        model = build(spec, len(data.classes))
        meta = checkpoint_meta(f"nas:trial{trial.number}", data.classes, size, {"spec": spec})
        with tempfile.TemporaryDirectory() as tmp:
            result = fit(model, data.train, data.val, tc, Path(tmp) / "model.pt", meta, progress=False)
        seconds = time.perf_counter() - t0
        trial.set_user_attr("seconds", round(seconds, 1))
        trial.set_user_attr("best_epoch", result.best_epoch)
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        done = trained(trial.study) + 1
        log(
            f"trial {trial.number} ({done}/{cfg.trials} trained): val F1 {result.best_f1:.4f}, {macs:,} MACs, "
            f"{size} px, width {spec['width_multiple']:g}, {seconds:.0f} s"
        )
        return float(result.best_f1), int(macs)

    return run


def trained(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def work(cfg: NasConfig, storage: str, default: Path, cache: Path, worker: int, threads: int | None) -> None:
    """One worker: optimize the shared study until it holds `cfg.trials` trained trials or the
    timeout; a process of its own under `search` (module-level, so spawn can pickle it)."""
    import optuna
    import torch

    if threads:
        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(cfg, open_storage(storage, default, cfg.heartbeat_s), worker, redact(storage) or str(default))
    data = load_data(cache, cfg)
    tag = f"[worker {worker}] " if cfg.workers > 1 else ""
    fn = objective(cfg, data, lambda s: print(tag + s, flush=True))
    rejected = {"n": 0}

    def stop(study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        if trial.state == TrialState.COMPLETE:
            rejected["n"] = 0
        elif trial.state == TrialState.PRUNED:
            rejected["n"] += 1
        if trained(study) >= cfg.trials:
            study.stop()
        elif rejected["n"] >= MAX_REJECTED:
            raise InputError(
                f"{MAX_REJECTED} sampled networks in a row were over max_macs {cfg.max_macs:,} or did not run at "
                f"{list(cfg.input_sizes)} px; raise max_macs or lower width_multiples / head_channels "
                "(params.yaml [nas])."
            )

    if trained(study) >= cfg.trials:
        return
    study.optimize(fn, timeout=cfg.timeout_min * 60, callbacks=[stop], gc_after_trial=True, catch=())


def search(cfg: NasConfig, cache: Path, out_dir: Path, storage: str | None = None) -> Any:
    """Run `cfg.workers` workers on the study (one: in this process) and return the study.

    Raises:
        InputError: bad storage or study (before any worker starts).
    """
    import multiprocessing as mp

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = cfg.storage if storage is None else storage
    default = out_dir / "journal.log"
    check_cache(cache)  # a missing cache fails here, not in every worker
    study = open_study(cfg, open_storage(storage, default, cfg.heartbeat_s), 0, redact(storage) or str(default))
    fail_dead_trials(study)
    cores = os.cpu_count() or 1
    if cfg.workers == 1:
        work(cfg, storage, default, cache, 0, None)
    else:
        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(target=work, args=(cfg, storage, default, cache, k, max(1, cores // cfg.workers)))
            for k in range(cfg.workers)
        ]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            for p in procs:
                p.terminate()
            for p in procs:
                p.join()
            raise
        finally:
            fail_dead_trials(study)
        if bad := [p.exitcode for p in procs if p.exitcode]:
            raise InputError(
                f"{len(bad)} of {cfg.workers} workers ended with exit status {bad} (their error is printed above); "
                "a trial a worker was running is marked failed. Rerun to continue the study."
            )
    return study


@dataclass(frozen=True)
class Found:
    number: int
    val_f1: float
    macs: int
    params: int
    input_size: int
    seconds: float
    spec: dict[str, Any]
    pareto: bool = False


def results(study: Any) -> list[Found]:
    """Every trained trial, sorted by MACs, the Pareto front (no trial with fewer or equal MACs
    has a higher F1) marked."""
    from optuna.trial import TrialState

    from tinycls.pareto import mark_front

    rows = {
        t.number: Found(
            t.number,
            float(t.values[0]),
            int(t.values[1]),
            int(t.user_attrs.get("params", 0)),
            int(t.params.get("input_size", 0)),
            float(t.user_attrs.get("seconds", 0.0)),
            t.user_attrs.get("spec", {}),
        )
        for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    }
    front = mark_front(as_runs(rows.values()))  # sorted by MACs, then F1 (highest first)
    return [replace(rows[int(r.name[1:])], pareto=r.pareto) for r in front]


def as_runs(found: Any) -> list:
    """Trials as tinycls.pareto runs (named #number), for its front and plot."""
    from tinycls.pareto import Run

    return [Run(f"#{r.number}", "nas", r.input_size, r.macs, r.val_f1, 0.0, "none", pareto=r.pareto) for r in found]


def chosen(found: list[Found]) -> Found:
    """The front's best validation F1 (ties: fewer MACs): every trial is within the budget."""
    return max((r for r in found if r.pareto), key=lambda r: (r.val_f1, -r.macs))


def spec_yaml(r: Found, cfg: NasConfig, study: str) -> str:
    """The spec of trial `r` as a file `student.arch: nas:<file>` takes, with where it came from."""
    import yaml

    head = (
        f"# Found by `tinycls nas` (study {study!r}, trial {r.number}): proxy validation macro F1 {r.val_f1:.4f}\n"
        f"# ({cfg.train_per_class} train images per class, {cfg.epochs} epochs), {r.macs:,} MACs at "
        f"{r.input_size} px.\n"
        f"# Train it: dvc exp run -S student.arch=nas:<this file> -S student.input_size={r.input_size}\n"
    )
    body = {k: r.spec[k] for k in ("depth_multiple", "width_multiple")}
    text = yaml.safe_dump(body, sort_keys=False)
    text += "backbone:\n" + "".join(
        f"  - {yaml.safe_dump(item, default_flow_style=True).strip()}\n" for item in r.spec["backbone"]
    )
    text += f"head: {r.spec['head']}\n"
    return head + text


def to_markdown(found: list[Found]) -> str:
    """The Pareto front's trials as a Markdown table."""
    lines = ["| trial | val F1 | MACs | params | px | s | modules | front |", "|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in found:
        if not r.pareto:
            continue
        mods = " ".join(f"{n}x{m.replace('InvertedResidual', 'IR')}" for n, m, _ in r.spec.get("backbone", []))
        lines.append(
            f"| {r.number} | {r.val_f1:.4f} | {r.macs:,} | {r.params:,} | {r.input_size} | {r.seconds:.0f} | {mods} | "
            f"{'*' if r.pareto else ''} |"
        )
    return "\n".join(lines)


def write_outputs(
    study: Any, cfg: NasConfig, out_dir: Path, plots: Path, spec_out: Path
) -> tuple[list[Found], Found | None]:
    """trials.csv and pareto.md in `out_dir`, every front trial's spec under out_dir/specs/, the
    plot (pareto.png) and its CSV (for `dvc plots`) in `plots`, the chosen spec at `spec_out`."""
    import csv

    from tinycls.pareto import plot

    found = results(study)
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = ["number", "val_f1", "macs", "params", "input_size", "seconds", "pareto"]
    for path in (out_dir / "trials.csv", plots / "nas_pareto.csv"):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows({k: getattr(r, k) for k in fields} for r in found)
    (out_dir / "pareto.md").write_text(to_markdown(found) + "\n")
    if not found:
        return found, None
    plot(as_runs(found), plots / "nas_pareto.png")
    shutil.rmtree(out_dir / "specs", ignore_errors=True)  # trials that left the front leave with it
    (out_dir / "specs").mkdir()
    for r in found:
        if r.pareto:
            (out_dir / "specs" / f"trial_{r.number}.yaml").write_text(spec_yaml(r, cfg, cfg.study))
    best = chosen(found)
    spec_out.parent.mkdir(parents=True, exist_ok=True)
    spec_out.write_text(spec_yaml(best, cfg, cfg.study))
    return found, best
