"""Process-group helpers for `torchrun` (PyTorch DDP semantics without wrapping the modules).

GAN phases use D in both the D and the G phase, so instead of DistributedDataParallel the trainer averages the
gradients of the network being stepped with one all-reduce per phase (as StyleGAN2-ADA does). gloo on CPU, nccl on
GPU; everything per-rank (seed, data shard, logging on rank 0) derives from the process group.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_from_env(device_pref: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes in the environment (if any) and choose this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local), device


def check_device(text: str, where: str = "train.device") -> torch.device:
    """A torch device that exists on this machine (cpu, cuda, cuda:N), else a one-line error naming `where`."""
    from ..errors import GanforgeError

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise GanforgeError(f"{where} {text!r}: not a device; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise GanforgeError(f"{where} {text}: no such CUDA device here ({count} available); use cpu")
    return device


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    if pref == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if pref == "cuda":
        check_device(pref)
        return torch.device(f"cuda:{local_rank}")
    return check_device(pref)


def all_reduce_grads(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Average gradients over ranks in one flat all-reduce."""
    if not info.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running stats, ...) to every rank."""
    if info.enabled:
        for b in module.buffers():
            dist.broadcast(b, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Tear the process group down on every rank together: a rank that destroys its gloo group and exits while a peer
    is still tearing down can abort at interpreter exit ("terminate called without an active exception")."""
    if info.enabled and dist.is_initialized():
        try:
            dist.barrier()
        except RuntimeError:  # a peer already failed: nothing to wait for
            pass
        dist.destroy_process_group()
