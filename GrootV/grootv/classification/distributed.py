"""Processes and devices: one process per device under torchrun, or a single plain process.

torchrun (``torch.distributed.run``) sets RANK, WORLD_SIZE and LOCAL_RANK; the process
group then uses NCCL when the processes drive CUDA devices and gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {value!r}") from None


def resolve_device(kind: str, local_rank: int) -> torch.device:
    """DEVICE 'auto' takes CUDA when present; 'cuda' without a GPU is an error."""
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("DEVICE is 'cuda' (--device cuda) but torch sees no CUDA device")
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(
                f"LOCAL_RANK {local_rank} has no GPU: this node has {count}; start at most {count} processes per node"
            )
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_runtime(device_kind: str) -> Runtime:
    """Joins the process group when started by torchrun (WORLD_SIZE > 1)."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = resolve_device(device_kind, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return Runtime(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def sum_over_processes(values: list[float], runtime: Runtime) -> list[float]:
    """Element-wise sum of ``values`` over all processes (float64, so counts stay exact)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    if runtime.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast_object(value, runtime: Runtime):
    """Rank 0's ``value`` on every process (a decision all processes must share)."""
    if not runtime.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def broadcast_buffers(module: torch.nn.Module, runtime: Runtime) -> None:
    """Copies rank 0's buffers (BatchNorm running statistics) to every process.

    Each process updates them from its own batches during training; after this, every
    process evaluates, and rank 0 saves, the same model.
    """
    if runtime.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()
