"""
runtime.py -- the machinery every script shares: the machine, precision, copies, the optimizer and its step.

Nothing here is self-evolution; it is what any PyTorch training script needs,
written once so that train.py, finetune.py and bench.py run exactly the same
code:

  0. options      numbers checked at parse time, presets that never drop what
                  the user typed, the options every script shares
  1. the machine  device, torchrun's processes, the precision and its autocast
  2. copies       host -> GPU without a wait
  3. optimizing   AdamW's parameter groups, the learning-rate schedule, one
                  optimizer step (unscale, clip, step, update, zero)
  4. one training step over micro-batches, with gradient accumulation and DDP;
                  the loss of a micro-batch is the caller's (self_evolution.py's);
                  the log of the steps (StepLog)
  5. stopping     Ctrl-C (or SIGTERM) asks the loop to stop between two steps
  6. reports      the README and JSON files a study leaves, written whole or not at all

Reproducibility: every random draw of a micro-batch (masks, dropout) comes
from `step_generator(seed, step, micro-batch)`, so the state of a run is its
step counter plus the weights and optimizer moments.
"""

import argparse
import datetime
import json
import math
import os
import signal
import textwrap
import threading
import warnings
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

import checkpoint
import data

# -----------------------------------------------------------------------------
# 0. Options


def number(kind=float, *, at_least=None, above=None, at_most=None, below=None):
    """An argparse `type` that also checks the range, so a bad value is refused at parse time
    with the option's name: "argument --ratio: 0 is not in (0, 1]". NaN and infinity are never
    accepted: every number option of every script is declared with this."""
    low = f"[{at_least}" if at_least is not None else f"({above}" if above is not None else "(-inf"
    high = f"{at_most}]" if at_most is not None else f"{below})" if below is not None else "inf)"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}")
        if not math.isfinite(value):  # nan passes every comparison below, and inf trains to NaN
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if ((at_least is not None and value < at_least) or (above is not None and value <= above)
                or (at_most is not None and value > at_most) or (below is not None and value >= below)):
            raise argparse.ArgumentTypeError(f"{text} is not in {low}, {high}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


class _Distinct(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        if len(set(values)) < len(values):
            parser.error(f"{option_string} {' '.join(map(str, values))}: a seed given twice would count one "
                         "run twice")
        setattr(namespace, self.dest, values)


def seeds_option(parser, default=None, help="seeds, one run each"):
    """--seeds: distinct whole numbers from 0 (numpy's generators take no negative seed)."""
    parser.add_argument("--seeds", type=number(int, at_least=0), nargs="+", default=default, action=_Distinct,
                        help=help)


def parse_with_preset(parser, presets, argv=None, default=None, namespace=None):
    """Parse `argv`, a `--preset NAME` first replacing the defaults of the options it names.

    The preset becomes the parser's defaults before the real parse, so whatever
    the user typed wins, in any spelling argparse accepts (`--lr 5e-3`,
    `--lr=5e-3`, an abbreviation such as `--ste 7`).
    """
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--preset", choices=sorted(presets), default=default)
    known, _ = first.parse_known_args(argv)
    if known.preset:
        parser.set_defaults(**presets[known.preset])
    return parser.parse_args(argv, namespace)


def typed_options(parser, argv=None) -> set:
    """The options (their dests) typed in `argv`, whatever their value: a preset's or a default's are
    not. `parser`, a fresh one, loses its defaults: parsed with none, the namespace holds those alone."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def grouped_settings(parser, settings, leave_out=()) -> list:
    """The settings as a few lines, one per option group of `parser` (its --help's), each wrapped to
    about 110 columns; the settings no option made (resolved ones: "auto" made a device) join the last."""
    lines, shown = [], set(leave_out)
    groups = [(g.title, [a.dest for a in g._group_actions]) for g in parser._action_groups[2:]]  # not help's
    for title, names in groups + [("resolved", sorted(settings))]:
        said = [f"{k}={settings[k]}" for k in names if k in settings and k not in shown]
        shown.update(names)
        if said:
            lines += textwrap.wrap(" ".join(said), 110, initial_indent=f"{title.split(' (')[0]}: ",
                                   subsequent_indent="    ", break_on_hyphens=False)
    return lines


def model_option(parser, default="minilm",
                 help="checkpoint folder, train.py run folder, hub id, or 'minilm'"):
    """--model: what every script starts from (checkpoint.resolve_checkpoint reads it)."""
    parser.add_argument("--model", default=default, help=help)


def machine_options(parser, precisions=("auto", "bf16", "fp16", "fp32"),
                    precision_help="auto: bf16 on GPUs that have it, fp16 with a gradient scaler on older "
                                   "GPUs, fp32 on CPU"):
    """--device and --precision, as setup() takes them."""
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:1, ... (under torchrun each process takes the GPU of its "
                             "LOCAL_RANK)")
    if precisions:
        parser.add_argument("--precision", choices=list(precisions), default="auto", help=precision_help)


def data_root_option(parser, holds="glue/, superglue/ and blimp/"):
    """--data-root: where the benchmark data is (data.find_data_root)."""
    parser.add_argument("--data-root", default=None,
                        help=f"folder with {holds}; None: $SE_DATA, else {data.DEFAULT_DATA_ROOT}")


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

    def leave(self):
        """Free the process group (under torchrun), as every process stops: left to the interpreter's
        exit, Gloo's threads are torn down unjoined, and the process can abort ("terminate called
        without an active exception") instead of exiting with its own status. Whatever holds the
        group (DDP) must be gone first."""
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def check_shared(self, *folders):
        """Under torchrun, stop (saying what to share) unless every process sees what the first
        writes in these folders: the corpus cache and the offline scores are written once and read
        by all, which needs a filesystem that every node shares."""
        if self.world == 1:
            return
        token = [uuid.uuid4().hex if self.main else None]
        dist.broadcast_object_list(token, src=0, group=self.long_waits)
        paths = [Path(folder) / f".shared-{token[0]}" for folder in folders]
        if self.main:
            for path in paths:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(token[0])
        self.barrier()
        unseen = [str(p.parent) for p in paths if not (p.is_file() and p.read_text() == token[0])]
        failed = self.anyone(bool(unseen))
        self.barrier()
        if self.main:
            for path in paths:
                path.unlink(missing_ok=True)
        if failed:
            self.leave()  # both stop here: each with status 1 and its message, never an abort
            raise SystemExit(f"process {self.rank} of {self.world}: "
                             + (f"does not see {', '.join(unseen)} as the first process writes it"
                                if unseen else "another process does not see the folders the first writes")
                             + "; under torchrun on several machines, put --out and the corpus cache "
                               "(--cache-dir or $SE_CACHE) on a filesystem that every machine shares")

    def anyone(self, flag: bool) -> bool:
        """Whether any process says so: a vote, at a point every process reaches (on the host)."""
        if self.world == 1:
            return flag
        votes = torch.tensor([int(flag)])
        dist.all_reduce(votes, group=self.long_waits)
        return bool(votes.item())


def one_line_warning(message, category, filename, lineno, line=None):
    """A warning as the scripts show it: "warning: ..." on one line, not the source line that raised it."""
    return f"warning: {message}\n"


def setup(device="auto", precision="auto") -> Machine:
    """Choose the device and precision; under torchrun, join the process group.

    device: "auto" (a GPU if there is one), "cpu", "cuda", "cuda:1", ... Under
    torchrun every process takes the GPU of its LOCAL_RANK.
    precision "auto": bf16 on GPUs that compute in it, fp16 (with a gradient
    scaler) on older GPUs, which would only emulate bf16, slowly; fp32 on a CPU.
    """
    warnings.formatwarning = one_line_warning  # a script's process: its warnings are for its user
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


def native_bf16(device) -> bool:
    """Whether the device computes in bf16 itself (a GPU that has it, a CPU with AVX-512 BF16
    or AMX) rather than emulating it, slowly."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def questioning_precision(choice, device, precision):
    """The self-questioning forward's precision for `--questioning-precision choice`: "auto" is bf16
    where the device computes it natively, else the training `precision` ("fp32", "bf16", "fp16")."""
    if choice != "auto":
        return choice
    return "bf16" if native_bf16(device) else precision


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
    (the 1-d tensors) are not decayed; the task heads (everything outside an
    encoder: the MLM or classification head; ELECTRA's pair has two encoders,
    discriminator.encoder and generator.encoder, and two heads) have groups of
    their own, marked "head", so that a fresh head can get its own learning rate.
    fused: one kernel for all tensors, several times faster than torch's default
    (CPU and CUDA)."""
    groups = {}
    for name, p in model.named_parameters():
        head, decay = ".encoder." not in f".{name}", p.dim() >= 2  # head: outside every encoder
        group = groups.setdefault((head, decay), {"params": [], "head": head,
                                                  "weight_decay": weight_decay if decay else 0.0})
        group["params"].append(p)
    return torch.optim.AdamW(list(groups.values()), lr=lr, betas=tuple(betas), eps=eps, fused=fused or None)


def lr_at(step, lr, warmup, total, schedule="poly", power=1.0, head_lr=None, head_steps=0):
    """The learning rate at `step` of a run of `total` steps.

    Linear warm-up over `warmup` steps, then "poly" (fairseq's polynomial
    decay to 0 at the last step: remaining ** power; power 1 is linear) or
    "constant". With `head_lr`, the rate of a fresh task head during the first
    `head_steps` steps (after a ramp over a tenth of them); after that the
    head joins the one schedule.
    """
    if head_lr is not None and step < head_steps:
        return head_lr * min(1.0, (step + 1) / max(1, head_steps // 10))
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    remaining = max(0.0, 1 - (step - warmup) / max(1, total - warmup))
    return lr * remaining ** power


def optimizer_step(optimizer, scaler, parameters, clip=1.0):
    """Unscale, clip the gradient norm (clip 0: off), step, update the scale, zero the gradients;
    returns the gradient norm before clipping (a tensor on the device: reading it would wait for it).

    The scaler is a no-op outside fp16; in fp16 it skips a step whose gradients
    overflowed and lowers its scale.
    """
    parameters = [p for p in parameters if p.grad is not None]
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
    if clip > 0:
        torch.nn.utils.clip_grads_with_norm_(parameters, clip, norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return norm


# -----------------------------------------------------------------------------
# 4. One training step over micro-batches


def step_generator(seed, step, micro, device):
    """The one source of randomness of a micro-batch: a function of (seed, step, micro-batch)."""
    seed = (seed * 1_000_003 + step) * 1_009 + micro
    torch.manual_seed(seed)  # dropout
    return torch.Generator(device).manual_seed(seed)  # masks


def train_step(model, optimizer, scaler, micro_batches, micro_loss, *, seed, step, machine, clip=1.0):
    """One optimizer step over this process's micro-batches: (their share of the loss, the
    tokens their losses were computed on, whether the loss and the gradient norm were finite),
    three tensors on the device.

    `micro_batches` holds (global micro-batch index, input ids, context), and
    `micro_loss(input_ids, generator, context)` returns the loss of one, a mean
    over its masked tokens, and their number: the method's, which this step
    does not know (self_evolution.micro_batch_loss; the context is its
    MaskingContext). The step follows the mean over all micro-batches of the
    global batch (every process has as many), so neither accumulation nor the
    number of processes changes the update. `model` is what the training forward runs through (DDP
    or compiled, or the model); `machine` gives the processes and the autocast.
    """
    n_micro = len(micro_batches) * machine.world  # the global batch's
    running = torch.zeros((), device=micro_batches[0][1].device)
    counted = torch.zeros((), dtype=torch.long, device=running.device)
    for j, (micro, input_ids, context) in enumerate(micro_batches):
        generator = step_generator(seed, step, micro, input_ids.device)
        last = j == len(micro_batches) - 1
        # DDP all-reduces the gradients once, after the last micro-batch
        with model.no_sync() if machine.world > 1 and not last else nullcontext():
            with machine.autocast:
                loss, n = micro_loss(input_ids, generator, context)
                loss = loss / n_micro
            # DDP averages gradients over processes, so each scales by `world`.
            scaler.scale(loss * machine.world).backward()
        running += loss.detach()
        counted += n
    norm = optimizer_step(optimizer, scaler, model.parameters(), clip)
    # In fp16 an overflowing gradient is the scaler's to skip; anywhere else it is divergence.
    finite = torch.isfinite(running) & (torch.isfinite(norm) | scaler.is_enabled())
    return running, counted, finite


class StepLog:
    """A training loop's log: log.jsonl (every logged step and evaluation) and the progress bar's figures.

    Between two log lines the loss, the tokens it was computed on and the
    steps that had none are summed on the device, and read only at the log
    line, so a step never waits for the GPU. A step whose loss or gradient
    norm was not finite stops the run there (before anything after it is
    saved), naming the last good checkpoint. A step whose loss had no token
    (a masking rule that masked nothing) trains on nothing: that is said
    once, and a phase whose first `checked` steps had no token at all stops
    the run, naming the steps.
    """

    def __init__(self, path, machine, step=0):
        self.path, self.machine, self.history, self.warned = Path(path), machine, [], False
        self.drawn = 0.0  # when the log's curves were last drawn (time.monotonic(); train.evaluate)
        self.sums = torch.zeros(4, device=machine.device)  # loss, tokens, steps without any, non-finite steps
        self.steps, self.inputs, self.t0 = 0, 0, time.time()
        self.phase_began, self.counted_in_phase = step, 0

    def record(self, entry):
        if self.machine.main:
            self.history.append(entry)
            with open(self.path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def add(self, loss, counted, finite, inputs):
        """One step: its loss, the tokens it was a mean over and whether it was finite (tensors, as
        train_step returns them), and the input tokens it read."""
        self.sums += torch.stack([loss.nan_to_num(), counted.float(), (counted == 0).float(),
                                  (~finite).float()])
        self.steps, self.inputs = self.steps + 1, self.inputs + inputs

    def phase_begins(self, step):
        self.phase_began, self.counted_in_phase = step, 0

    def write(self, step, phase, lr, bar, checked):
        """The log line of the steps since the last; stop if one was not finite, or if the phase's first
        `checked` steps had no token."""
        world = self.machine.world
        if world > 1:
            dist.all_reduce(self.sums)
        loss_sum, counted, empty_steps, diverged = self.sums.tolist()
        if diverged:  # stopped before the step's checkpoint: the last good one stays
            run = self.path.parent
            last = checkpoint.latest_checkpoint(run) if (run / "latest").is_file() else "none"
            raise SystemExit(f"steps {step - self.steps + 1}-{step}: the loss or the gradient norm was not "
                             f"finite in {diverged:.0f} of them; training diverged, and nothing of it was "
                             f"saved: the last good checkpoint is {last}. Lower --lr, or keep --clip on")
        entry = {"step": step, "phase": phase, "loss": loss_sum / self.steps, "lr": lr,
                 "tokens_per_s": self.inputs * world / max(time.time() - self.t0, 1e-9)}
        self.record(entry)
        bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{lr:.1e}", tok_s=f"{entry['tokens_per_s']:.0f}")
        self.counted_in_phase += counted
        if empty_steps and not self.warned and self.machine.main:
            print(f"\nwarning: {empty_steps:.0f} of the {self.steps} steps to step {step} masked no token: "
                  "they train on nothing")
            self.warned = True
        if self.counted_in_phase == 0 and step - self.phase_began >= checked:
            raise SystemExit(f"no token was masked in steps {self.phase_began + 1}-{step} ({phase}): the "
                             "masking rule selects nothing, so nothing is trained; check --ratio, "
                             "--select threshold --threshold, or the --masking-fn function")
        self.sums.zero_()
        self.steps, self.inputs, self.t0 = 0, 0, time.time()


# -----------------------------------------------------------------------------
# 5. Stopping between two steps


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM, recorded instead of raised: a loop checks `requested`
    at its top, so a run stops between two steps, never inside an update.

    Used as a context manager around the loop; the previous handlers come back
    on exit. `signal_number` says which signal asked (exit status 128 + it, as
    shells expect: 130 for Ctrl-C). A second Ctrl-C is recorded as well: a run
    that must die at once can be killed (kill -9 leaves the last checkpoint).
    A KeyboardInterrupt that code raises inside the block (Ctrl-C itself only
    asks) ends the block and is recorded the same way, with `raised` set.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, message="stopping after this step, then saving a checkpoint"):
        self.message, self.signal_number, self.raised, self._previous = message, None, False, {}

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def _record(self, number, frame):
        if self.signal_number is None:
            print(f"\n{signal.Signals(number).name}: {self.message}", flush=True)
        self.signal_number = number

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # only there can Python catch signals
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._record)
        return self

    def __exit__(self, kind, value, traceback):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        if kind is KeyboardInterrupt:
            self.signal_number, self.raised = signal.SIGINT, True
            return True
        return False


def check_outputs(outputs, what):
    """Refuse to score an evaluation whose model outputs hold NaN or infinity: a metric of them (an
    accuracy of argmaxes, a mean of NaNs) is a number that means nothing. A host sync: for
    evaluations, never the training step."""
    if not bool(torch.isfinite(outputs).all()):
        raise SystemExit(f"{what}: the model's outputs hold NaN or infinity (its weights diverged, or a "
                         "file it loaded did), so no score is reported")


# -----------------------------------------------------------------------------
# 6. Reports


def write_report(folder, text, results):
    """A study's report in `folder`: README.md (what a reader reads) and results.json (the numbers)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write(folder / "README.md", lambda p: p.write_text(text, encoding="utf-8"))
    checkpoint.write_json(folder / "results.json", results)
