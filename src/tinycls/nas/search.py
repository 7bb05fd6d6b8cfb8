"""The search itself: proxy training of sampled networks on the prepared cache, by one or more workers."""

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinycls.errors import InputError
from tinycls.nas.config import MAX_REJECTED, NasConfig
from tinycls.nas.space import fit_width, sample
from tinycls.nas.study import claim, fail_dead_trials, is_rdb, open_storage, open_study, queued, redact, settle


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
    from tinycls.cache import cap_per_class, load_classes, load_split

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
        from tinycls.specnet import build
        from tinycls.train import TrainConfig, fit, seed_everything

        claim(trial)  # this worker runs it: pid_space, pid, worker_id, host
        raw, size = sample(trial, cfg)  # a queued retry: its parameters are already set, so the same network
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
    """One worker: optimize the shared study until it holds `cfg.trials` trained trials and no
    queued network (a retry of a dead worker's trial), or the timeout; a process of its own under
    `search` (module-level, so spawn can pickle it). After each trial it fails, and queues again,
    the trials of dead workers on this machine (`fail_dead_trials`); with an RDB, Optuna's
    heartbeat does so before each trial, for workers anywhere."""
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
    heartbeat = is_rdb(storage)  # Optuna's fail_stale_trials runs before each trial

    def stop(study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        if trial.state == TrialState.COMPLETE:
            rejected["n"] = 0
        elif trial.state == TrialState.PRUNED:
            rejected["n"] += 1
        if not heartbeat:
            fail_dead_trials(study)
        if trained(study) >= cfg.trials and not queued(study):
            study.stop()
        elif rejected["n"] >= MAX_REJECTED:
            raise InputError(
                f"{MAX_REJECTED} sampled networks in a row were over max_macs {cfg.max_macs:,} or did not run at "
                f"{list(cfg.input_sizes)} px; raise max_macs or lower width_multiples / head_channels "
                "(params.yaml [nas])."
            )

    if trained(study) >= cfg.trials and not queued(study):
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
    settle(study)  # dead workers' trials: failed, their networks queued for this run
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
                "a trial a killed worker was running is marked failed and its network queued again (a trial that "
                "raised is only failed). Rerun to continue the study."
            )
    return study
