"""The Optuna study a search grows: its storage (journal file or RDB), sampler, and the trials
of dead workers (failed, and their networks queued again)."""

import copy
import functools
import os
import socket
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from tinycls.errors import InputError
from tinycls.nas.config import DIRECTIONS, MAX_RETRY, OBJECTIVES, SETTINGS, NasConfig


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
    """Optuna storage: a journal file (`storage` empty: `default`; or a path) or an RDB URL. An RDB
    gets Optuna's heartbeat: a RUNNING trial silent for 3 x `heartbeat_s` is failed by the next
    worker that starts a trial, on any machine, and its network queued again (`retry`). Optuna's
    JournalStorage has no heartbeat; `fail_dead_trials` covers a journal file's workers.

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
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
                return optuna.storages.RDBStorage(
                    storage,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_s,
                    grace_period=3 * heartbeat_s,
                    heartbeat_stale_trial_callback=functools.partial(
                        retry, why=f"its worker sent no heartbeat for {3 * heartbeat_s} s"
                    ),
                )
        except Exception as e:  # sqlalchemy's OperationalError, ArgumentError, a missing driver, ...
            error = e
            # workers starting together on an empty database race to create Optuna's tables: the
            # losers get an IntegrityError or ProgrammingError ("already exists"), and the tables are there
            if type(e).__name__ not in ("IntegrityError", "ProgrammingError") or attempt == 2:
                break
            time.sleep(0.5 * (attempt + 1))
    first = (str(getattr(error, "orig", None) or error).strip().splitlines() or [type(error).__name__])[0]
    raise InputError(
        f"storage {redact(storage)}: cannot open it ({type(error).__name__}: {first[:200]}); check the host, port, "
        "user and database, and that the server is running (docs/search.md, 'Architecture search')."
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


def pid_space() -> str:
    """Where a pid names one process: this boot of this kernel (its random boot_id) and this pid
    namespace (a container has its own). Two machines, or two containers, with one hostname differ
    here; without /proc (macOS), the hostname."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return f"host:{socket.gethostname()}"


_WORKER: dict[int, str] = {}


def worker_id() -> str:
    """This process's name in a study, unique across machines and restarts: a random uuid4, then
    where it runs (pid_space, pid)."""
    pid = os.getpid()
    if pid not in _WORKER:
        _WORKER[pid] = f"{uuid.uuid4().hex}@{pid_space()}/{pid}"
    return _WORKER[pid]


def claim(trial: Any) -> None:
    """Record this worker as the one running `trial`: pid_space, then pid (fail_dead_trials
    judges a trial once its pid is there), then worker_id; the hostname only for people."""
    trial.set_user_attr("pid_space", pid_space())
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("worker_id", worker_id())
    trial.set_user_attr("host", socket.gethostname())


def retry(study: Any, trial: Any, why: str = "its worker stopped") -> bool:
    """Queue the network of `trial`, failed because its worker died, for the next worker to
    train: Optuna's RetryHeartbeatStaleTrialCallback (a WAITING trial with the same parameters;
    `RetryHeartbeatStaleTrialCallback.retried_trial_number` gives the original), at most
    MAX_RETRY times for one network. The queued trial's user attrs are only `retries` (this
    trial's number) and `retry_reason`: the dead worker's own are not carried over. Whether it
    was queued."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

    failed = copy.deepcopy(trial)
    failed.user_attrs = {"retries": trial.number, "retry_reason": why}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        again = len(Retry.retry_history(failed)) < MAX_RETRY
        Retry(max_retry=MAX_RETRY)(study, failed)
    tail = "its network is queued again" if again else f"its network failed {MAX_RETRY + 1} times, not queued again"
    print(f"trial {trial.number}: {why}; marked failed, {tail}", flush=True)
    return again


def settle(study: Any) -> int:
    """Fail, and queue again, the RUNNING trials of dead workers: by heartbeat (an RDB, any
    machine), then by pid (this machine, any storage); the number failed by pid."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # nothing on a journal file: it has no heartbeat
    return fail_dead_trials(study)


def fail_dead_trials(study: Any) -> int:
    """Mark failed the RUNNING trials whose worker process is gone (killed mid-trial), when it ran
    where this process sees its pid (pid_space), and queue their networks again (`retry`); their
    number. Other trials (other machines or containers, whatever their hostname) are left to the
    RDB heartbeat. Trials of an older tinycls, which recorded no pid_space, are judged by hostname."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    here, me, n = pid_space(), worker_id(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if "pid" not in attrs or attrs.get("worker_id") == me:
            continue  # not claimed yet, or this process's own
        if "pid_space" in attrs:
            local = attrs["pid_space"] == here
        else:
            local = attrs.get("host") == socket.gethostname()  # the documented fallback
        if not local or _alive(int(attrs["pid"])):
            continue
        try:  # as optuna.storages.fail_stale_trials: only the worker whose write fails it retries it
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:  # another worker failed it first
            continue
        retry(study, t, f"its worker (pid {attrs['pid']}) is gone")
        n += 1
    return n


def queued(study: Any) -> int:
    """WAITING trials: networks queued for the next worker (retries of dead workers' trials)."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


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
