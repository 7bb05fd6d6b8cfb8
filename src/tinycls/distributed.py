"""Training on N processes with torch.distributed (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK):
`gloo` on CPU, `nccl` on CUDA, one process per GPU. Every rank prepares the whole global batch
with the same random draws as one process would, and trains on its share of it; gradients are
averaged by DistributedDataParallel. BatchNorm sees each rank's share and its running statistics
are averaged every epoch (timm's distribute_bn), or with `sync_bn` it normalizes over the global
batch (timm's convert_sync_batchnorm on CUDA, SyncBatchNormCPU here on CPU), so N processes give one
process's result at the same global batch, up to float order. Only rank 0 writes.
"""

import atexit
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from tinycls.device import resolve_device
from tinycls.errors import InputError
from tinycls.ranks import cpu_threads, primary, rank, world

TIMEOUT = timedelta(minutes=10)  # a collective no rank answers: fail, never hang forever


def available(device: str) -> tuple[int, str]:
    """(how many processes can train here, of what): GPUs when `device` may use CUDA and there
    are some, else CPU cores."""
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.device_count(), "CUDA GPUs"
    return cpu_threads(), "CPU cores"


def check_processes(processes: int, device: str) -> None:
    """Raises InputError when `processes` exceeds the devices (GPUs, else CPU cores) here."""
    n, what = available(device)
    if processes > n:
        raise InputError(
            f"processes: {processes}, but this machine has {n} {what}: one process trains on each. "
            f"Set processes to at most {n}."
        )


def setup(device: torch.device) -> torch.device:
    """Join the process group when torchrun started several processes (once); this rank's
    device: its own GPU (LOCAL_RANK) on CUDA, and a share of the CPU cores on CPU."""
    if world() == 1:
        return device
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        torch.set_num_threads(max(1, available("cpu")[0] // world()))
    if not dist.is_initialized():  # CPU tensors (a loss sum, a broadcast row) go by gloo beside nccl
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
        # left to interpreter shutdown, the group's threads can abort the process ("terminate called
        # without an active exception") after all went well: close it first
        atexit.register(dist.destroy_process_group)
    return device


@contextmanager
def primary_first(device: str) -> Iterator[None]:
    """Rank 0 runs the block first (a download, an extraction), then the other ranks, which
    then find it done and only read; in one process, the block."""
    first = world() > 1
    if first:
        setup(resolve_device(device))
        if not primary():
            dist.barrier()
    yield
    if first and primary():
        dist.barrier()


def share(n: int) -> slice:
    """This rank's part of a global batch of n images: contiguous, sizes differing by at most 1."""
    r, w = rank(), world()
    return slice(r * n // w, (r + 1) * n // w)


def wrap(model: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
    """`model` for the training steps: itself in one process, else (with synchronized
    BatchNorm when asked, converted in place) in DistributedDataParallel. Each rank keeps its
    own BatchNorm statistics (no broadcast from rank 0 before each step): average_bn averages them.

    Raises:
        InputError: sync_bn on CPU for a network with norm layers other than BatchNorm2d.
    """
    if world() == 1:
        return model
    if sync_bn and device.type == "cuda":
        from timm.layers import convert_sync_batchnorm  # BatchNorm and timm's BatchNormAct2d alike

        model = convert_sync_batchnorm(model)
    elif sync_bn:
        SyncBatchNormCPU.convert(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


def average_bn(*models: nn.Module | None) -> None:
    """Average BatchNorm running statistics over the ranks (each saw its own share)."""
    if world() > 1:
        from timm.utils import distribute_bn

        for m in models:
            if m is not None:
                distribute_bn(m, world(), reduce=True)


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def total(*values: float) -> list[float]:
    """Each value summed over the ranks."""
    if world() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def check_identical(model: nn.Module) -> None:
    """Under torchrun: check every rank holds the same weights (DDP keeps them so) and, on rank 0,
    print each rank's digest of them.

    Raises:
        RuntimeError: the ranks' weights differ (a bug: they trained apart).
    """
    if world() == 1:
        return
    found: list[Any] = [None] * world()
    dist.all_gather_object(found, weights_digest(model.state_dict()))
    if primary():
        print("weights sha256 by rank: " + ", ".join(f"{r} {d}" for r, d in enumerate(found)), flush=True)
    if len(set(found)) > 1:
        raise RuntimeError(f"the ranks' weights differ after training: {found}")


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """16 hex digits of sha256 over a state_dict's names and bytes."""
    h = hashlib.sha256()
    for k, v in state.items():
        h.update(k.encode() + v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class _AllReduce(torch.autograd.Function):
    """Sum over the ranks, with the gradient of that sum (the gradients summed over the ranks)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNormCPU(nn.BatchNorm2d):
    """BatchNorm2d over the global batch of all ranks, on CPU (gloo), where torch's
    SyncBatchNorm is CUDA-only: the sums travel by the autograd-aware all_reduce, so the
    gradients are those of one process's BatchNorm over the whole batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world() == 1:
            return super().forward(x)
        all_reduce = _AllReduce.apply
        dims = (0, 2, 3)
        count = all_reduce(torch.tensor([float(x.shape[0] * x.shape[2] * x.shape[3])]))
        mean = all_reduce(x.sum(dims)) / count
        centered = x - mean[None, :, None, None]
        var = all_reduce(centered.square().sum(dims)) / count
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1).clamp(min=1), alpha=m)
        y = centered * torch.rsqrt(var + self.eps)[None, :, None, None]
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None] if self.affine else y

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Every BatchNorm2d under `module` replaced in place by one of these (same tensors).

        Raises:
            InputError: another kind of BatchNorm (timm's BatchNormAct2d, a BatchNorm1d), which
                would stay per process.
        """
        for name, child in module.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and type(child) is not nn.BatchNorm2d:
                raise InputError(
                    f"sync_bn: true on CPU synchronizes torch's BatchNorm2d only, and this network has a "
                    f"{type(child).__name__} ({name}). Set sync_bn: false (BatchNorm statistics averaged every "
                    "epoch), or train on CUDA, where timm's convert_sync_batchnorm converts it."
                )
            if type(child) is nn.BatchNorm2d and child.track_running_stats:
                new = cls(child.num_features, child.eps, child.momentum, child.affine, True)
                new.weight, new.bias = child.weight, child.bias  # the same tensors: an optimizer keeps them
                for buf in ("running_mean", "running_var", "num_batches_tracked"):
                    setattr(new, buf, getattr(child, buf))
                setattr(module, name, new)
            else:
                cls.convert(child)
        return module
