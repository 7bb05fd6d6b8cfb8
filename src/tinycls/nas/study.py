"""The Optuna study a search grows: its storage (journal file or RDB), sampler, and dead trials."""

import os
import socket
import warnings
from pathlib import Path
from typing import Any

from tinycls.errors import InputError
from tinycls.nas.config import DIRECTIONS, OBJECTIVES, SETTINGS, NasConfig


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


def fail_dead_trials(study: Any) -> int:
    """Mark failed the RUNNING trials whose worker process is gone (killed mid-trial), when it ran
    where this process sees its pid (pid_space); their number. Other trials (other machines or
    containers, whatever their hostname) are left to the RDB heartbeat."""
    from optuna.trial import TrialState

    here, n = pid_space(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        space = t.user_attrs.get("pid_space") or f"host:{t.user_attrs.get('host')}"  # a trial of an older tinycls
        if space not in (here, f"host:{socket.gethostname()}") or _alive(int(t.user_attrs.get("pid", -1))):
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
