"""Data-parallel training across processes (``torchrun``): NCCL on GPUs, gloo on CPUs.

Every process draws the same global batch (same seed, same batch order, same noise and synthetic
irregularities), keeps its shard, and computes its losses on it; after each backward the
gradients of the network being updated are averaged over the processes, so every optimizer step
equals the single-process step on the global batch. Batch norm is synchronised: the statistics of
each forward pass are those of the global batch (``torch.nn.SyncBatchNorm`` on GPUs; on CPUs,
where PyTorch's SyncBatchNorm refuses to run, :class:`DistributedBatchNorm2d`).

Why explicit gradient averaging rather than wrapping the networks in DistributedDataParallel: the
adversarial steps run D two or three times per backward (real, reconstructed, irregular inputs)
and backpropagate the R/I loss through D without updating D, which DDP's bucketed reducer either
refuses or all-reduces at the wrong moment. The averaging here is the same all-reduce, flattened
into one call per network and step.

Rank 0 alone validates the checkpoint's manifest and writes files; every rank trains. A single
process trains on the GPU when there is one (``OCC_TRAIN_DEVICE=cpu`` keeps it on the CPU, where
training is deterministic); calibration and export always run on the CPU.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


class DistributedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the global batch of all processes (gloo/CPU form of SyncBatchNorm).

    Same parameters, buffers and state-dict keys as :class:`torch.nn.BatchNorm2d`. In training
    mode the per-channel sum and sum of squares are all-reduced with autograd, so gradients flow
    through the shared statistics as they would on one process holding the whole batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64, device=x.device)
        dist.all_reduce(count)
        n = float(count.item())
        sums = all_reduce(torch.stack([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3))]))
        mean = sums[0] / n
        var = sums[1] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * var.detach() * n / max(n - 1.0, 1.0))
        shape = (1, -1, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


@dataclass
class Distributed:
    """Where this process stands: ``rank`` of ``world`` processes, training on ``device``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_env(cls) -> "Distributed":
        """Join the process group that ``torchrun`` describes in the environment (a no-op alone)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:  # one process: the GPU when there is one (OCC_TRAIN_DEVICE=cpu keeps the CPU)
            wanted = os.environ.get("OCC_TRAIN_DEVICE", "auto")
            use_cuda = wanted != "cpu" and torch.cuda.is_available()
            return cls(device=torch.device("cuda:0" if use_cuda else "cpu"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available() and torch.cuda.device_count() > local_rank
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, device=device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def prepare(self, module: nn.Module) -> nn.Module:
        """Synchronised batch norm (when there are several processes), moved to this device."""
        if self.world > 1:
            if self.device.type == "cuda":
                module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            else:
                module = _convert_batchnorm(module)
        module = module.to(self.device)
        if self.device.type == "cuda":  # tensor cores read NHWC without transposes
            module = module.to(memory_format=torch.channels_last)
        return module

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's contiguous part of a global batch, on this device (channels-last on a GPU)."""
        part = batch.tensor_split(self.world)[self.rank] if self.world > 1 else batch
        part = part.to(self.device, non_blocking=True)
        if self.device.type == "cuda" and part.dim() == 4:
            part = part.contiguous(memory_format=torch.channels_last)
        return part

    def autocast(self):
        """Mixed precision for forward passes on a GPU (bfloat16: no loss scaling needed); a no-op on the CPU,
        where training stays FP32 and deterministic."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def loss_weight(self, local: int, total: int) -> float:
        """Factor on a shard's mean loss so that averaging gradients gives the global mean's gradient."""
        return local * self.world / total

    def average_gradients(self, module: nn.Module) -> None:
        """Mean of each gradient over the processes, one all-reduce per call."""
        if self.world <= 1:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def global_mean(self, value: float, local: int, total: int) -> float:
        """A shard's mean (of ``local`` samples) → the mean over the global batch of ``total``."""
        if self.world <= 1:
            return value
        tensor = torch.tensor([value * local], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor.item()) / total

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _convert_batchnorm(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, DistributedBatchNorm2d):
        converted = DistributedBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                           module.track_running_stats)
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        setattr(module, name, _convert_batchnorm(child))
    return module


def plain_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights with the keys of the unconverted network (both batch-norm forms
    keep BatchNorm2d's keys), for checkpoints and best-epoch snapshots."""
    return {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}
