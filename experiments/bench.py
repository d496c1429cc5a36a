"""
bench.py -- speed and memory of one training step, per masking mode.

    python -m experiments.bench   # MiniLM, 16 x 128, all modes, on this machine
    python -m experiments.bench --config cfg.json --device cuda --dtype bf16 --modes random online

Prints one JSON line per mode, then (on stderr, for a human) a comparison:

  random       a training run's step with random masking and plain cross-entropy (the baseline method)
  online       informative masking scored in the step (one extra no-grad forward) + TLS loss
  offline      informative masking from stored scores (here random ones: selecting costs the same) + TLS loss
  alternative  the usual way: a `transformers` BertForMaskedLM/RobertaForMaskedLM step, which projects
               every position onto the vocabulary (random init; the weights do not change the time).
               Skipped when transformers is not installed (it is not a project dependency).

Our modes run the step train.py runs, runtime.train_step over self_evolution.micro_batch_loss, so the
numbers are what a training run gets. Inputs are synthetic rows, [CLS] + random ordinary ids + [SEP],
exactly --length long (no padding).

Reading the numbers: tokens_per_s = batch * length * steps / seconds over the timed steps (after
--warmup untimed ones); s_per_step is the mean time of one optimizer step, s_per_step_median its
median (steadier when a neighbour shares the machine). With --rounds N every mode runs N times, in
turn, each line carries its "round", and the comparison gives the ratio of each round. Every mode
runs in a fresh process so memory is its own. On CPU peak_mb is the peak resident memory (MiB) of
the process from just before the first step to the end (the high-water mark is reset after loading,
where Linux allows; "peak_since" says which), baseline_mb the resident memory before the first step
(model + inputs), and step_peak_mb = peak - baseline: gradients, AdamW moments and the step's
activations. On CUDA the same three come from torch.cuda's allocator. A --config run has random
weights and a stand-in tokenizer (mask id = vocab_size - 1, [CLS]/[SEP] = the two lowest ids other
than padding): it is for timing only.
"""

import argparse
import functools
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
import types
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import runtime
import self_evolution as se
from masking import random_mask, special_tokens_mask
from model import EncoderConfig, MaskedLM
from tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parent.parent  # the repository: run as python -m experiments.bench

MODES = ("random", "online", "offline", "alternative")
OUR_METHODS = {"random": se.Method(masking="random", smoothing="none"),
               "online": se.Method(masking="informative", smoothing="token"),
               "offline": se.Method(masking="informative", smoothing="token")}  # with stored scores
LR = 1e-5  # train.py's default; the learning rate does not change the time of a step


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Tokens/s, seconds per optimizer step and peak memory of one "
                                             "training step, per masking mode (one JSON line each). "
                                             "See the module docstring for how to read them.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    runtime.model_option(src, help="checkpoint folder, hub id, or 'minilm'")
    src.add_argument("--config",
                     help="a config.json: random weights of that architecture, no tokenizer (timing only)")
    ap.add_argument("--batch", type=int, default=16, help="sequences per optimizer step (one micro-batch)")
    ap.add_argument("--length", type=int, default=128, help="tokens per sequence, [CLS] and [SEP] included")
    runtime.machine_options(ap, precisions=())
    ap.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32",
                    help="autocast dtype (fp16 adds a gradient scaler)")
    ap.add_argument("--dropout", type=runtime.number(float, at_least=0, below=1), default=0.1,
                    help="hidden and attention dropout (train.py's default)")
    ap.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=3,
                    help="untimed steps first (allocator, AdamW state, kernel choice)")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), metavar="MODE",
                    help=f"any of {', '.join(MODES)}")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every mode this many times, in turn: on a shared machine "
                         "a slow spell then hits all modes alike, and the ratios are given per round")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads; default: torch's own choice")
    ap.add_argument("--questioning-precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                    help="of the self-questioning forward, train.py's option and default (auto: bf16 where "
                         "the device computes it natively, else --dtype)")
    ap.add_argument("--peak-tflops", type=runtime.number(float, above=0), default=None,
                    help="the device's dense peak in the step's precision (TFLOP/s): each line then gives "
                         "the model FLOPs utilisation, the step's matrix-product FLOPs over time x peak")
    ap.add_argument("--ingest", nargs="+", metavar="FILE", default=None,
                    help="instead of the steps: build the corpus cache of these files (as train.py does) and "
                         "report its peak memory and tokens/s beside a bare batch-encoding loop's")
    ap.add_argument("--questioning-agreement", type=runtime.number(int, at_least=1), metavar="BLOCKS",
                    default=None, help="instead of the steps: on this many held-out blocks of the corpus "
                    "'wiki', how far bf16 questioning agrees with fp32, and each one's offline-pass time")
    ap.add_argument("--only", choices=MODES, help=argparse.SUPPRESS)  # internal: run one mode in this process
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: no CUDA device here")
    args.questioning_precision = runtime.questioning_precision(args.questioning_precision,
                                                               torch.device(args.device), args.dtype)
    return args


# -----------------------------------------------------------------------------
# What a step computes: the FLOPs of its matrix products


def step_flops(config, batch, length, mode, ratio=0.15) -> float:
    """Forward and backward FLOPs of the matrix products of one training step (README, Speed).

    Per token, a layer's projections and feed-forward cost 2 (4 H^2 + 2 H I),
    its attention 4 L H; projecting a position onto the vocabulary costs
    2 (H^2 + H V). A backward costs twice its forward. The trained forward
    projects only the masked tokens (ratio of them) but `alternative`, which
    projects every position; `online` adds a no-grad questioning forward that
    projects every position, `offline` one that projects the masked only.
    """
    H, I, V, n = config.hidden_size, config.intermediate_size, config.vocab_size, config.num_hidden_layers
    tokens, masked = batch * length, ratio * batch * length
    encoder = tokens * n * (8 * H * H + 4 * H * I + 4 * length * H)
    head = 2 * (H * H + H * V)
    trained = 3 * (encoder + head * (tokens if mode == "alternative" else masked))
    questioning = {"online": encoder + head * tokens, "offline": encoder + head * masked}
    return trained + questioning.get(mode, 0.0)


# -----------------------------------------------------------------------------
# The child: one mode, in its own process


def rss_mb(field):
    """VmRSS (now) or VmHWM (peak) of this process in MiB; ru_maxrss (KiB on Linux) where /proc is missing."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak():
    """Reset the kernel's peak-RSS mark, so that loading the checkpoint does not count as training memory."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return "first step"
    except OSError:
        return "process start"


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"cpu ({torch.get_num_threads()} threads, {cpu})"


def build(args, device):
    """Our model, its config as a dict (for the alternative), a tokenizer or a stand-in,
    and weights' origin."""
    # both models
    overrides = dict(hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout)
    if args.config:
        config = EncoderConfig.from_json(args.config, **overrides)
        model, origin = MaskedLM(config), "random init"
        v, pad = config.vocab_size, config.pad_token_id
        # 1/2 for BERT (pad 0), 0/2 for RoBERTa (pad 1)
        cls_id, sep_id = [i for i in range(4) if i != pad][:2]
        tok = types.SimpleNamespace(mask_id=v - 1, cls_id=cls_id, sep_id=sep_id, vocab_size=v,
                                    special_ids=sorted({pad, cls_id, sep_id, v - 1}),
                                    continuation=torch.zeros(v, dtype=torch.bool))
    else:
        with warnings.catch_warnings():  # MiniLM ships no MLM head: a fresh one is fine for timing
            warnings.simplefilter("ignore")
            model, origin = MaskedLM.from_pretrained(args.model, **overrides), "checkpoint"
        tok = Tokenizer(args.model)
    return model.to(device).train(), model.config.to_dict(), tok, origin


def synthetic_batch(args, tok, max_positions, device):
    """[CLS] + random non-special ids + [SEP], exactly --length tokens per row, from a seeded generator."""
    if args.length > max_positions:
        raise SystemExit(f"--length {args.length} exceeds the model's {max_positions} positions")
    gen = torch.Generator().manual_seed(0)
    ordinary = torch.tensor([i for i in range(tok.vocab_size) if i not in set(tok.special_ids)])
    body = ordinary[torch.randint(len(ordinary), (args.batch, args.length - 2), generator=gen)]
    ids = torch.cat([torch.full((args.batch, 1), tok.cls_id), body,
                     torch.full((args.batch, 1), tok.sep_id)], 1)
    return ids.to(device)


def ours(args, mode, model, tok, device, input_ids):
    """A step function that is a training run's step (one micro-batch) in this mode."""
    optimizer = runtime.make_optimizer(model, LR)  # the authors' AdamW settings, fused, as train.py's
    scaler = torch.amp.GradScaler(device.type, enabled=args.dtype == "fp16")
    # offline: stored scores of the same shape and dtype the offline pass writes; selecting from them
    # costs the same
    scores = None
    if mode == "offline":
        scores = torch.rand(input_ids.shape, generator=torch.Generator().manual_seed(1)).to(device)
    method = replace(OUR_METHODS[mode], questioning_precision=args.questioning_precision)
    micro_loss = functools.partial(se.micro_batch_loss, method, model, tok)
    batch = [(0, input_ids, se.MaskingContext(stored_scores=scores))]
    machine = runtime.Machine(device, precision=args.dtype)  # one process, the autocast of --dtype
    return lambda step: runtime.train_step(model, optimizer, scaler, batch, micro_loss, seed=0, step=step,
                                           machine=machine)


def alternative(args, config, tok, device, autocast, input_ids):
    """The standard `transformers` MLM step: logits at every position, cross-entropy where labels != -100."""
    import transformers

    kind = config["model_type"]
    hf_config = getattr(transformers, {"bert": "BertConfig", "roberta": "RobertaConfig"}[kind])(**config)
    cls = getattr(transformers, {"bert": "BertForMaskedLM", "roberta": "RobertaForMaskedLM"}[kind])
    try:
        model = cls._from_config(hf_config, attn_implementation="sdpa")
    except (ValueError, ImportError, TypeError):
        model = cls(hf_config)
    model = model.to(device).train()
    # The same AdamW settings, decay groups, clipping and masking ratio as ours; torch's default AdamW kernel.
    optimizer = runtime.make_optimizer(model, LR, fused=False)
    scaler = torch.amp.GradScaler(device.type, enabled=args.dtype == "fp16")
    maskable = ~special_tokens_mask(input_ids, tok)

    def step(i):
        gen = torch.Generator(device).manual_seed(i)
        corrupted, labels, _ = random_mask(input_ids, maskable, tok.mask_id, tok.vocab_size,
                                           se.Method.ratio, gen)
        with autocast:
            loss = model(input_ids=corrupted, labels=labels).loss
        scaler.scale(loss).backward()
        runtime.optimizer_step(optimizer, scaler, model.parameters())

    extra = {"attention": model.config._attn_implementation, "transformers": transformers.__version__}
    return step, model, extra


def run_one(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.only == "alternative":
        try:
            import transformers  # noqa: F401
        except ImportError:
            return {"mode": "alternative", "skipped": "transformers is not installed"}
    torch.manual_seed(0)
    model, config, tok, origin = build(args, device)
    input_ids = synthetic_batch(args, tok, model.config.max_positions, device)
    autocast = runtime.autocast_for(device, args.dtype)
    extra = {"weights": origin}
    if args.only == "alternative":
        del model  # the alternative builds its own from the same config
        step, model, more = alternative(args, config, tok, device, autocast, input_ids)
        extra = {"weights": "random init (timing only)", **more}
    else:
        step = ours(args, args.only, model, tok, device, input_ids)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        sync(), torch.cuda.reset_peak_memory_stats(device)
        baseline, since = torch.cuda.memory_allocated(device) / 2**20, "first step"
    else:
        baseline, since = rss_mb("VmRSS"), reset_peak()
    for i in range(args.warmup):
        step(i)
    # per step too: on a shared machine the median resists a neighbour's burst better than the mean
    times = []
    for i in range(args.warmup, args.warmup + args.steps):
        sync()
        t0 = time.perf_counter()
        step(i)
        sync()
        times.append(time.perf_counter() - t0)
    elapsed = sum(times)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else rss_mb("VmHWM")
    flops = step_flops(model.config, args.batch, args.length, args.only)
    utilisation = {"mfu": round(flops / (elapsed / args.steps) / (args.peak_tflops * 1e12), 4)} \
        if args.peak_tflops else {}
    return {"mode": args.only, "tokens_per_s": round(args.batch * args.length * args.steps / elapsed, 1),
            "s_per_step": round(elapsed / args.steps, 4), "gflops_per_step": float(f"{flops / 1e9:.4g}"),
            **utilisation,
            "s_per_step_median": round(statistics.median(times), 4),
            "peak_mb": round(peak, 1), "baseline_mb": round(baseline, 1),
            "step_peak_mb": round(peak - baseline, 1), "peak_since": since, "device": device_name(device),
            "dtype": args.dtype, "batch": args.batch, "length": args.length, "steps": args.steps,
            "model": args.config or args.model,
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "torch": torch.__version__, **extra}


# -----------------------------------------------------------------------------
# The parent: one fresh process per mode, then a comparison


def summary(rounds):
    """Ratios against the goals, round by round (the modes of one round ran side by side in time),
    and peak memory."""
    both = lambda a, b, key: [(i + 1, rd) for i, rd in enumerate(rounds)
                              if key in rd.get(a, {}) and key in rd.get(b, {})]

    def ratio(a, b, key, goal):
        pairs = [(i, rd[a][key] / rd[b][key]) for i, rd in both(a, b, key)]
        if not pairs:
            return []
        median = statistics.median(v for _, v in pairs)
        detail = f" (round {', round '.join(f'{i}: {v:.2f}' for i, v in pairs)})" if len(rounds) > 1 else ""
        return [f"{median:.2f}x{detail}; goal {goal}"]

    lines = [f"random vs alternative, tokens/s: {x}"
             for x in ratio("random", "alternative", "tokens_per_s", ">= 2x")]
    lines += [f"online vs random, time per step: {x}"
              for x in ratio("online", "random", "s_per_step", "<= 1.3x with bf16 questioning")]
    for m in ("random", "online", "offline"):
        if both(m, "alternative", "peak_mb"):
            i, rd = both(m, "alternative", "peak_mb")[-1]
            a, b = rd[m], rd["alternative"]
            lines.append(f"peak memory {m} vs alternative: {a['peak_mb']:.0f} vs {b['peak_mb']:.0f} MiB "
                         f"(step only: {a['step_peak_mb']:.0f} vs {b['step_peak_mb']:.0f})"
                         + (f", round {i}" if len(rounds) > 1 else ""))
    return lines


# -----------------------------------------------------------------------------
# Building a corpus cache: its memory and speed, against the tokenizer alone


def ingest(args, part):
    """`build`: data.load_corpus of the files into a fresh cache folder, timed, with the process's
    peak resident memory; `bare`: only the tokenizer's encode_batch calls on the same documents
    in the same batches, timed (the bound that building cannot beat)."""
    import tempfile

    import data

    tok = Tokenizer(args.model)
    if part == "build":
        since = reset_peak()
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            _, _, info = data.load_corpus(args.ingest, tok, args.length, heldout=0.01, cache_dir=cache)
            seconds = time.perf_counter() - t0
        tokens = info["n_tokens"]
        extra = {"peak_mb": round(rss_mb("VmHWM"), 1), "peak_since": since, "blocks": info["n_blocks"]}
    else:
        seconds = tokens = 0
        for source in args.ingest:
            for batch in data._batches(data._file_documents(source)):
                t0 = time.perf_counter()
                tokens += sum(len(e.ids) for e in tok.tok.encode_batch(batch, add_special_tokens=False))
                seconds += time.perf_counter() - t0
        extra = {}
    size = sum(Path(f).stat().st_size for f in args.ingest)
    return {"ingest": part, "files": args.ingest, "mb": round(size / 2**20, 1), "tokens": tokens,
            "seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds), **extra,
            "device": device_name(torch.device("cpu")), "torch": torch.__version__}


# -----------------------------------------------------------------------------
# Questioning in bf16: what it changes, and what it saves


def questioning_agreement(args):
    """On held-out blocks: the share of the tokens fp32 questioning selects that bf16 questioning also
    selects, the mean absolute change of the TLS loss when its references come from bf16, and the
    seconds of the offline pass (self_evolution.offline_scores) in each precision."""
    import tempfile

    import data

    machine = runtime.setup(args.device, "fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MaskedLM.from_pretrained(args.model).to(machine.device)
    tok = Tokenizer(args.model)
    with tempfile.TemporaryDirectory() as cache:
        _, heldout, _ = data.load_corpus("wiki", tok, args.length, model.config.max_positions, 0.05, cache)
    methods = {p: se.Method(questioning_precision=p) for p in ("fp32", "bf16")}
    both = selected = 0
    changes = []
    for start in range(0, min(args.questioning_agreement, len(heldout)), args.batch):
        ids = heldout.batch(np.arange(start, min(start + args.batch, len(heldout)))).to(machine.device)
        masked = {p: se.corrupt(m, model, tok, ids, torch.Generator(machine.device).manual_seed(start))
                  for p, m in methods.items()}
        chosen = {p: set(m.positions[m.targets != -100].tolist()) for p, m in masked.items()}
        both, selected = both + len(chosen["fp32"] & chosen["bf16"]), selected + len(chosen["fp32"])
        fp32 = masked["fp32"]  # the same masked input and training forward; references from each precision
        with torch.no_grad():
            logits = model.eval()(fp32.input_ids, positions=fp32.positions)
        for_bf16 = se.question(model, ids, fp32.positions, precision="bf16")
        losses = [se.loss(methods["fp32"], logits, fp32.targets, r) for r in (fp32.reference, for_bf16)]
        changes.append(abs(float(losses[0] - losses[1])))
    seconds = {}
    for p, method in methods.items():
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            scores = Path(out) / "scores.npy"
            se.offline_scores(method, model, heldout, scores, args.batch, machine, quiet=True)
            seconds[p] = time.perf_counter() - t0
    return {"questioning_agreement": both / max(1, selected), "tls_loss_change": float(np.mean(changes)),
            "blocks": min(args.questioning_agreement, len(heldout)), "offline_pass_s": seconds,
            "offline_pass_speedup": seconds["fp32"] / seconds["bf16"], "model": args.model,
            "device": device_name(machine.device), "torch": torch.__version__}


def main(argv=None):
    args = parse_args(argv)
    if args.questioning_agreement:
        print(json.dumps(questioning_agreement(args)), flush=True)
        return 0
    if args.only:
        print(json.dumps(run_one(args)), flush=True)
        return 0
    if args.ingest:  # each part in a process of its own, so that its peak memory is its own
        results = {}
        for part in ("build", "bare"):
            code = ("from experiments import bench; import json, sys; "
                    f"print(json.dumps(bench.ingest(bench.parse_args(sys.argv[1:]), {part!r})))")
            options = ["--model", args.model, "--length", str(args.length), "--ingest", *args.ingest]
            child = subprocess.run([sys.executable, "-c", code, *options], stdout=subprocess.PIPE, text=True,
                                   cwd=ROOT)
            if child.returncode:
                return child.returncode
            results[part] = json.loads(child.stdout.splitlines()[-1])
            print(json.dumps(results[part]), flush=True)
        ratio = results["build"]["tokens_per_s"] / results["bare"]["tokens_per_s"]
        print(f"building the cache: {ratio:.2f}x the tokenizer's own tokens/s (goal >= 0.9); "
              f"peak memory {results['build']['peak_mb']:.0f} MiB", file=sys.stderr)
        return 0
    common = ["--config", args.config] if args.config else ["--model", args.model]
    common += (["--batch", str(args.batch), "--length", str(args.length), "--device", args.device,
                "--dtype", args.dtype, "--steps", str(args.steps), "--warmup", str(args.warmup),
                "--questioning-precision", args.questioning_precision]
               + (["--threads", str(args.threads)] if args.threads else [])
               + (["--peak-tflops", str(args.peak_tflops)] if args.peak_tflops else []))
    rounds, failed = [], False
    for r in range(args.rounds):
        results = {}
        for mode in args.modes:
            child = subprocess.run([sys.executable, "-m", "experiments.bench", *common, "--only", mode],
                                   stdout=subprocess.PIPE, text=True, cwd=ROOT)  # stderr passes through
            lines = [l for l in child.stdout.splitlines() if l.startswith("{")]
            result = (json.loads(lines[-1]) if child.returncode == 0 and lines
                      else {"mode": mode, "error": f"exit code {child.returncode}"})
            failed |= "error" in result
            results[mode] = dict(result, round=r + 1) if args.rounds > 1 else result
            print(json.dumps(results[mode]), flush=True)
        rounds.append(results)
    for line in summary(rounds):
        print(line, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
