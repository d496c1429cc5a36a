"""
runtime.py -- the machinery every script shares: the machine, precision, copies, the optimizer and its step.

Nothing here is self-evolution; it is what any PyTorch training script needs,
written once so that train.py, finetune.py and bench.py run exactly the same
code:

  1. the machine  device, torchrun's processes, the precision and its autocast
  2. copies       host -> GPU without a wait
  3. optimizing   AdamW's parameter groups, the learning-rate schedule, one
                  optimizer step (unscale, clip, step, update, zero)
  4. one training step over micro-batches, with gradient accumulation and DDP;
                  the loss of a micro-batch is the caller's (self_evolution.py's)

Reproducibility: every random draw of a micro-batch (masks, dropout) comes
from `step_generator(seed, step, micro-batch)`, so the state of a run is its
step counter plus the weights and optimizer moments.
"""

import datetime
import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

# -----------------------------------------------------------------------------
# 1. The machine


@dataclass(frozen=True)
class Machine:
    """What setup() chose: the device, this process's place among torchrun's, the precision."""

    device: torch.device
    rank: int = 0  # this process, 0 .. world - 1; process 0 logs, evaluates and saves
    world: int = 1  # processes in all (torchrun's WORLD_SIZE)
    precision: str = "fp32"  # "bf16", "fp16" or "fp32": what "auto" became
    long_waits: object = None  # the process group of barrier() (see setup)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def autocast(self):
        return autocast_for(self.device, self.precision)

    def barrier(self):
        """Wait for every process (on the group for long waits); nothing with one process."""
        if self.world > 1:
            dist.barrier(group=self.long_waits)


def setup(device="auto", precision="auto") -> Machine:
    """Choose the device and precision; under torchrun, join the process group.

    device: "auto" (a GPU if there is one), "cpu", "cuda", "cuda:1", ... Under
    torchrun every process takes the GPU of its LOCAL_RANK.
    precision "auto": bf16 on GPUs that compute in it, fp16 (with a gradient
    scaler) on older GPUs, which would only emulate bf16, slowly; fp32 on a CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and (device.index is None or world > 1):
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    long_waits = None
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # The others wait at a barrier while the first process tokenizes a corpus
        # that is not cached yet, or evaluates: such waits get hours, on a group of
        # their own, and the training collectives keep the default timeout, which
        # reports a hung process in minutes.
        long_waits = dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=3))
    if precision == "auto":
        precision = ("fp32" if device.type != "cuda" else
                     "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16")
    return Machine(device, rank, world, precision, long_waits)


def autocast_for(device, precision):
    """Mixed precision: matrix products in bf16/fp16, the rest (and our losses) in float32.

    Without its cache: autocast keeps the low-precision copy of each weight for
    the rest of the region, and a copy made in the no-grad self-questioning
    forward has no autograd history. Reused by the training forward in the same
    region, it would leave those weights without gradients (PyTorch issue
    112583, fixed upstream late in 2025). Each weight is used once per forward,
    so the cache saved nothing here anyway.
    """
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False) if dtype else nullcontext()


# -----------------------------------------------------------------------------
# 2. Copies


def to_device(batch, device):
    """Host -> GPU without waiting: a copy from pinned memory queues behind the GPU's work."""
    return batch.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else batch.to(device)


# -----------------------------------------------------------------------------
# 3. Optimizing


def make_optimizer(model, lr, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-6, fused=True):
    """AdamW; the defaults are the authors' (fairseq, RoBERTa). Biases and LayerNorm
    (the 1-d tensors) are not decayed; the task head (everything outside
    model.encoder: the MLM or classification head) has groups of its own, marked
    "head", so that a fresh head can get its own learning rate. fused: one kernel
    for all tensors, several times faster than torch's default (CPU and CUDA)."""
    groups = {}
    for name, p in model.named_parameters():
        head, decay = not name.startswith("encoder."), p.dim() >= 2
        group = groups.setdefault((head, decay), {"params": [], "head": head,
                                                  "weight_decay": weight_decay if decay else 0.0})
        group["params"].append(p)
    return torch.optim.AdamW(list(groups.values()), lr=lr, betas=tuple(betas), eps=eps, fused=fused or None)


def lr_at(step, lr, warmup, total, schedule="poly", power=1.0, head_lr=None, head_warmup=0):
    """The learning rate at `step` of a run of `total` steps.

    Linear warm-up over `warmup` steps, then decay to 0 at the last step:
    "linear", "poly" (fairseq's polynomial decay: remaining ** power; power 1
    is linear) or "constant". With `head_lr`, the rate of a fresh task head
    during the first `head_warmup` steps (after a ramp over a tenth of them);
    after that the head joins the one schedule.
    """
    if head_lr is not None and step < head_warmup:
        return head_lr * min(1.0, (step + 1) / max(1, head_warmup // 10))
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    remaining = max(0.0, 1 - (step - warmup) / max(1, total - warmup))
    return lr * remaining ** (1.0 if schedule == "linear" else power)


def optimizer_step(optimizer, scaler, parameters, clip=1.0):
    """Unscale, clip the gradient norm (clip 0: off), step, update the scale, zero the gradients.

    The scaler is a no-op outside fp16; in fp16 it skips a step whose gradients
    overflowed and lowers its scale.
    """
    if clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(parameters, clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


# -----------------------------------------------------------------------------
# 4. One training step over micro-batches


def step_generator(seed, step, micro, device):
    """The one source of randomness of a micro-batch: a function of (seed, step, micro-batch)."""
    seed = (seed * 1_000_003 + step) * 1_009 + micro
    torch.manual_seed(seed)  # dropout
    return torch.Generator(device).manual_seed(seed)  # masks


def train_step(model, optimizer, scaler, micro_batches, micro_loss, *, seed, step, n_micro, world=1, clip=1.0,
               autocast=nullcontext()):
    """One optimizer step over this process's micro-batches; returns their share of the loss.

    `micro_batches` holds (global micro-batch index, input ids, stored scores or
    None); `micro_loss(input_ids, generator, scores=...)` returns the loss of one,
    a mean over its masked tokens. The step follows the mean over all
    `n_micro` micro-batches of the global batch, so neither accumulation nor
    the number of processes changes the update. `model` is what the training
    forward runs through (DDP or compiled, or the model itself).
    """
    running = torch.zeros((), device=micro_batches[0][1].device)
    for j, (micro, input_ids, scores) in enumerate(micro_batches):
        generator = step_generator(seed, step, micro, input_ids.device)
        last = j == len(micro_batches) - 1
        with model.no_sync() if world > 1 and not last else nullcontext():  # all-reduce once, after the last
            with autocast:
                loss = micro_loss(input_ids, generator, scores=scores) / n_micro
            # DDP averages gradients over processes, so each scales by `world`.
            scaler.scale(loss * world).backward()
        running += loss.detach()
    optimizer_step(optimizer, scaler, model.parameters(), clip)
    return running
