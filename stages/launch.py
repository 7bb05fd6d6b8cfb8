"""Run a training stage on `processes` processes: `python -m stages.launch N stages.teacher` (the
cmd of the training stages in dvc.yaml, N from params.yaml). One process runs the stage as
`python -m stages.teacher` would (the same process, signals and exit status); more start
torchrun on this machine, one process per GPU (nccl) or per CPU core (gloo). A rank that fails
stops the others (torchrun), and this ends naming it."""

import os
import signal
import sys


def main(argv: list[str]) -> None:
    if len(argv) != 2 or not argv[0].isdigit() or int(argv[0]) < 1:
        sys.exit(f"usage: python -m stages.launch PROCESSES MODULE (PROCESSES a whole number >= 1), not {argv}")
    processes, module = int(argv[0]), argv[1]
    if processes == 1:
        os.execv(sys.executable, [sys.executable, "-m", module])
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from tinycls.ranks import cpu_threads

    # --standalone: a rendezvous on a free local port, so two stages (or clones) never collide.
    # Each rank checks its settings (processes against the GPUs or cores here, as stage check does).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cpu_threads() // processes)))  # each its share of the cores
    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={processes}", "-m", module])
    try:
        run(args)
    except SignalException:  # Ctrl-C or `kill` reached torchrun too: it stopped the ranks, rank 0 said so
        sys.exit(130)
    except ChildFailedError as e:
        failed = sorted(e.failures.items())
        asked = (130, -signal.SIGINT, -signal.SIGTERM)  # stopped by torchrun, Ctrl-C or `kill`
        if any(f.exitcode == 2 for _, f in failed) and all(f.exitcode in (2, *asked) for _, f in failed):
            sys.exit(2)  # bad input: rank 0 printed it (stages.runner); torchrun stopped any slower rank
        died = [f"rank {r} ({f'signal {f.signal_name()}' if f.exitcode < 0 else f'exit status {f.exitcode}'})"
                for r, f in failed if f.exitcode not in asked]  # fmt: skip
        stopped = [str(r) for r, f in failed if f.exitcode in asked]
        print(f"Error: {module} on {processes} processes: {', '.join(died) or 'a signal'} stopped it"
              + (f"; torchrun then stopped rank {', '.join(stopped)}" if died and stopped else "")
              + ". `dvc repro` resumes after the last finished epoch.", file=sys.stderr)  # fmt: skip
        sys.exit(1 if died else 130)


if __name__ == "__main__":
    main(sys.argv[1:])
