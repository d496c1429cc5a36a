"""
finetune.py -- fine-tune any checkpoint on GLUE/SuperGLUE tasks and report the standard metric.

    python finetune.py --model runs/demo --task CoLA MRPC RTE CB --seeds 1 2 3 --out runs/demo-glue.json
    python finetune.py --model runs/demo --task RTE --tuning prompt --lr 1e-2 --save runs/prompts
    python finetune.py --model runs/electra --task RTE   # an ELECTRA run: its discriminator, ELECTRA's head

SE claims a better starting point for downstream tasks, so the ablation
fine-tunes every checkpoint on the same benchmark tasks and compares what the
benchmarks report. The tasks, their files, submissions and metrics are
glue.py's; this file trains on them:

  1. one seed   a fresh head on the checkpoint, AdamW, the dev set scored after
                every epoch and the best epoch kept
  2. prompts    prompt tuning (the encoder frozen; a deep prompt and the head
                learn), prompt transfer from a source task's prompt, and PANDA's
                distillation from a teacher, weighted by how transferable the
                source is
  3. a task     every seed of a task: mean and standard deviation of the
                metrics, and the best seed's test predictions
  4. the command line
"""

import argparse
import math
import shutil
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import checkpoint
import glue
import runtime
from model import EncoderConfig, Prompt, SequenceClassifier
from tokenizer import Tokenizer

# -----------------------------------------------------------------------------
# 1. Fine-tuning one seed
#
# The usual recipe of BERT and RoBERTa papers: a fresh head on the first
# token (model.SequenceClassifier), AdamW, linear warm-up then linear decay
# (runtime.lr_at's "poly" of power 1), a few epochs, the dev set scored after
# each epoch and the best epoch kept.
# Everything random (the head's initial weights, the order of the examples,
# dropout) comes from the seed, so a seed reproduces a run.


def batches(tok, examples, order, batch_size, max_length, device):
    """(tokenized inputs on the device, labels or None on a test split) in the given order;
    pairs are cut longest side first. A multiple-choice example (COPA) becomes one pair
    (text_a, choice) per choice, in order."""
    for start in range(0, len(order), batch_size):
        rows = [examples[i] for i in order[start:start + batch_size]]
        if rows[0].choices:
            enc = tok([e.text_a for e in rows for _ in e.choices],
                      [c for e in rows for c in e.choices], max_length)
        else:
            pairs = [e.text_b for e in rows] if rows[0].text_b is not None else None
            enc = tok([e.text_a for e in rows], pairs, max_length)
        # on the host: predict needs none
        labels = None if rows[0].label is None else torch.tensor([e.label for e in rows])
        yield {k: runtime.to_device(v, device) for k, v in enc.items()}, labels


def task_logits(model, task, enc, prompt=None):
    """(batch, classes) float32 logits; a multiple-choice task's head scores each choice alone
    (one output), and its choices' scores are the logits."""
    logits = model(**enc, prefix=None if prompt is None else prompt()).float()
    return logits.view(-1, task.choices) if task.choices else logits


def task_loss(task, logits, labels):
    if task.labels is None:  # regression (STS-B)
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def predict(model, tok, task, examples, args, machine, prompt=None, logits=False):
    """Class indices (or regression scores) for every example, in their order; or the logits."""
    was_training = model.training
    model.eval()
    out = []
    order = np.arange(len(examples))
    for enc, _ in batches(tok, examples, order, 2 * args.batch_size, args.max_length, machine.device):
        with machine.autocast:
            scores = task_logits(model, task, enc, prompt)
        runtime.check_outputs(scores, f"{task.name}: predictions")
        out.append(scores if logits else scores.squeeze(-1) if task.labels is None else scores.argmax(-1))
    model.train(was_training)
    return torch.cat(out).cpu().numpy()


def classifier(args, task, machine):
    """The checkpoint with a fresh head for the task; frozen but for the head under prompt tuning."""
    with warnings.catch_warnings():  # a pretrained checkpoint has no head for this task: fresh by design
        warnings.simplefilter("ignore")
        model = SequenceClassifier.from_pretrained(args.model, num_labels=task.outputs,
                                                   hidden_dropout_prob=args.dropout,
                                                   attention_probs_dropout_prob=args.dropout)
    if args.tuning == "prompt":
        model.encoder.requires_grad_(False)
    return model.to(machine.device).train()


def finetune_seed(args, task, tok, data, seed, machine, test=None, init=None, teacher=None):
    """Train one seed; return the dev scores of every epoch, the best epoch, its test predictions,
    and, under prompt tuning, its prompt and head (`tuned`).

    `init`: a source prompt to start from (prompt transfer). `teacher`: (its
    logits on the training examples, in their order; lambda) to distil from.
    """
    torch.manual_seed(seed)  # the fresh head and dropout; a fresh prompt's start has its own generator
    model, device = classifier(args, task, machine), machine.device
    prompt = None
    if args.tuning == "prompt":
        prompt = Prompt(model.config, args.prompt_length, seed).to(device)
        if init is not None:
            checkpoint.copy_exact(prompt.prefix.data, init, "the --prompt-init prompt")
    trainable = model
    if prompt is not None:
        trainable = nn.ModuleDict({"prompt": prompt, "head": nn.ParameterList(model.head().values())})
    train_ex, dev_ex = data["train"], data["dev"]
    total = math.ceil(len(train_ex) / args.batch_size) * args.epochs
    warmup = max(1, round(args.warmup * total))
    optimizer = runtime.make_optimizer(trainable, args.lr, args.weight_decay)  # the authors' betas and eps
    scaler = torch.amp.GradScaler(device.type, enabled=machine.precision == "fp16")
    gold = np.array([e.label for e in dev_ex])
    epochs, best, tuned, step = [], None, None, 0
    bar = tqdm(total=total, desc=f"{task.name} seed {seed}", disable=args.quiet,
               dynamic_ncols=True, leave=False)
    for epoch in range(args.epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(train_ex))
        train_batches = batches(tok, train_ex, order, args.batch_size, args.max_length, device)
        for start, (enc, labels) in zip(range(0, len(order), args.batch_size), train_batches):
            for group in optimizer.param_groups:
                group["lr"] = runtime.lr_at(step, args.lr, warmup, total, schedule="poly")
            with machine.autocast:
                logits = task_logits(model, task, enc, prompt)
            labels = runtime.to_device(labels, device)
            if teacher is None:
                loss = task_loss(task, logits, labels)
            else:  # the teacher's logits of these very examples
                rows = torch.from_numpy(order[start:start + args.batch_size])
                loss = distillation_loss(logits, teacher[0][rows].to(device), labels, task, teacher[1])
            scaler.scale(loss).backward()
            runtime.optimizer_step(optimizer, scaler, trainable.parameters(), clip=1.0)
            step += 1
            bar.update(1)
        predicted = predict(model, tok, task, dev_ex, args, machine, prompt)
        result = {"epoch": epoch + 1, **glue.scores(task, predicted, gold)}
        epochs.append(result)
        bar.set_postfix({k: f"{v:.3f}" for k, v in result.items() if k != "epoch"})
        if best is None or result[task.metric] > best[task.metric]:
            best = result
            predictions = predict(model, tok, task, test, args, machine, prompt) if test else None
            if prompt is not None:  # what a task run keeps: the prompt and the head, not the encoder
                tuned = {"prompt": prompt.prefix.detach().clone(),
                         **{f"head.{k}": v.detach().clone() for k, v in model.head().items()}}
    bar.close()
    return {"seed": seed, "best": best, "epochs": epochs, "test_predictions": predictions, "tuned": tuned}


# -----------------------------------------------------------------------------
# 2. Prompt tuning, prompt transfer and PANDA
#
# Prompt tuning (Vega v2's downstream half, with P-tuning v2's deep prompts):
# the encoder is frozen and only a prompt and the task head learn. Prompt
# transfer (SPoT, Vu et al. 2022) starts the prompt from a source task's.
# PANDA (Zhong et al. 2022) trains a *teacher*, the source prompt further tuned
# on the target (plain transfer), then a *student* prompt from scratch with
#     loss = cross-entropy + lambda * MSE(student logits, teacher logits),
# lambda growing with how transferable the source is: the cosine similarity
# of the source's prompt and the target's own (trained from scratch).
#
# One departure from PANDA: the cosine compares what training changed in the two
# prompts, each minus its random start. A start is 92,160 draws of N(0, 1) and a
# few hundred steps move it far less than its length, so the cosine of the
# prompts themselves measures their starts: +0.99 for two prompts of the same
# seed, whatever their tasks, and +-0.003 for two seeds, whatever their tasks.


def transferability(source, target) -> float:
    """PANDA's prompt-similarity metric: the cosine similarity of two tasks' prompt changes, flattened
    (`prompt_change`: what each task taught its prompt)."""
    if source.shape != target.shape:
        raise ValueError(f"prompts of shapes {tuple(source.shape)} and {tuple(target.shape)} do not compare")
    return float(F.cosine_similarity(source.flatten(), target.flatten(), dim=0))


def prompt_change(prompt, seed):
    """What tuning changed in a prompt tuned from its random start (model.Prompt.start of its seed)."""
    return prompt - Prompt.start(prompt.shape, seed).to(prompt.device)


def distill_weight(similarity, scale=1.0) -> float:
    """lambda = scale * max(0, similarity): no distillation from a source that points elsewhere."""
    return scale * max(0.0, similarity)


def distillation_loss(student_logits, teacher_logits, labels, task, weight):
    """The student's loss: its task loss plus `weight` times the mean squared distance of its
    logits from the teacher's (PANDA)."""
    return task_loss(task, student_logits, labels) + weight * F.mse_loss(student_logits, teacher_logits)


def teacher_logits(args, task, tok, data, tuned, machine):
    """The logits a tuned prompt and head give the training examples, in their order (a teacher's)."""
    model = classifier(args, task, machine)
    with torch.no_grad():
        for k, p in model.head().items():
            checkpoint.copy_exact(p, tuned[f"head.{k}"], f"the teacher's head.{k}")
    prompt = Prompt(model.config, args.prompt_length).to(machine.device)
    checkpoint.copy_exact(prompt.prefix.data, tuned["prompt"], "the teacher's prompt")
    return torch.from_numpy(predict(model, tok, task, data["train"], args, machine, prompt, logits=True))


def tuned_shapes(config, task, length) -> dict:
    """The name and shape of every tensor a prompt-tuning run of `task` on this model keeps
    (checkpoint.save_tuned)."""
    with torch.device("meta"):  # the shapes alone: nothing is drawn
        head = SequenceClassifier(replace(config, num_labels=task.outputs)).head()
    return {"prompt": (config.num_hidden_layers, 2, length, config.hidden_size),
            **{f"head.{k}": tuple(p.shape) for k, p in head.items()}}


def saved_change(folder):
    """`prompt_change` of the prompt saved in `folder`, which must have been tuned from a random start;
    and the seed of that start."""
    path, meta = checkpoint.record_path(folder), checkpoint.prompt_meta(folder)
    if meta["start"] != "random":
        raise checkpoint.PromptError(f"{path}: a prompt started from {meta['start']}; "
                                     "the transferability compares prompts tuned from their random start")
    return prompt_change(checkpoint.prompt_tensor(folder), meta["seed"]), meta["seed"]


def prompt_inputs(args, task, config, fingerprint) -> dict:
    """The saved prompts a prompt-tuning run of `task` starts from, each checked against what it claims
    before any training: "init" (--prompt-init), "source" with its "change" and "seed" (--distill-from),
    "target" (--target-prompt's change), "teachers" ({seed: tensors}, --teachers)."""
    length, out = args.prompt_length, {}
    if args.prompt_init:
        checkpoint.tuned_on(args.prompt_init, fingerprint, "the --prompt-init prompt")
        out["init"] = checkpoint.load_prompt(args.prompt_init, config, length)
    if not args.distill_from:
        return out
    checkpoint.tuned_on(args.distill_from, fingerprint, "the --distill-from prompt")
    out["source"] = checkpoint.load_prompt(args.distill_from, config, length)
    out["change"], out["seed"] = saved_change(args.distill_from)
    if args.target_prompt:
        why = "both prompts of the transferability start alike: from the source's seed"
        checkpoint.tuned_on(args.target_prompt, fingerprint, "the --target-prompt", task=task.name,
                            seed=(out["seed"], why))
        checkpoint.load_prompt(args.target_prompt, config, length)  # its shape
        out["target"] = saved_change(args.target_prompt)[0]
    if args.teachers:
        start = checkpoint.fingerprint(Path(args.distill_from) / "prompt.safetensors")
        shapes, out["teachers"] = tuned_shapes(config, task, length), {}
        for seed in args.seeds:
            folder = Path(args.teachers) / f"seed-{seed}"
            checkpoint.tuned_on(folder, fingerprint, f"the teacher of seed {seed}", task=task.name,
                                seed=(seed, f"--teachers' seed-{seed}/ holds seed {seed}'s teacher"),
                                start=start)
            needs = f"a teacher of {task.name} on this model with --prompt-length {length}"
            out["teachers"][seed] = checkpoint.check_shapes(folder / "prompt.safetensors",
                                                            checkpoint.load_tuned(folder), shapes, needs)
    return out


# -----------------------------------------------------------------------------
# 3. A task over several seeds: mean and standard deviation


def model_identity(args):
    """The checkpoint's config, and under prompt tuning its model_fingerprint (None otherwise)."""
    folder = checkpoint.resolve_checkpoint(args.model)
    config = EncoderConfig.from_json(folder / "config.json")
    return config, checkpoint.model_fingerprint(folder) if args.tuning == "prompt" else None


def task_inputs(args, name, identity=None) -> dict:
    """Everything a task's run reads, read and checked before its training starts, so that a bad test row
    or a prompt of another model stops the command before the first step, not after the last: the task's
    "data" (train, dev) and "test" rows, and under prompt tuning its prompts (prompt_inputs) and the
    model's "fingerprint". `identity`: model_identity(args), computed once for every task."""
    config, fingerprint = identity or model_identity(args)
    task, folder = glue.TASKS[name], glue.task_folder(name, args.data_root)
    data = {"train": glue.subsample(glue.read_examples(name, folder, "train"), args.max_train),
            "dev": glue.read_examples(name, folder, "dev")}
    test = glue.read_examples(name, folder, "test") if args.predict else None
    prompts = prompt_inputs(args, task, config, fingerprint) if args.tuning == "prompt" else {}
    return {"data": data, "test": test, "fingerprint": fingerprint, **prompts}


def run_task(args, name, tok, machine, log=print, inputs=None):
    """Fine-tune (or prompt-tune) args.model on one task for every seed in args.seeds; return the report.
    `inputs`: task_inputs(args, name), read before (else read here)."""
    task = glue.TASKS[name]
    inputs = inputs or task_inputs(args, name)
    data, test = inputs["data"], inputs["test"]
    t0, extra = time.time(), {}
    if args.distill_from:  # PANDA: a teacher per seed (the source prompt tuned here), then a fresh student
        source, change, seed = inputs["source"], inputs["change"], inputs["seed"]
        if args.target_prompt:
            target = inputs["target"]
        else:  # from the source's start: a change from another start also differs by what the start gives
            log(f"{name}: its own prompt, for the transferability (seed {seed}, the source's, from scratch)")
            own = finetune_seed(args, task, tok, data, seed, machine)["tuned"]["prompt"]
            target = prompt_change(own, seed)
        similarity = transferability(change, target)
        weight = distill_weight(similarity, args.distill_scale)
        log(f"{name}: transferability = cosine(source prompt's change, {name}'s own) = {similarity:+.3f}; "
            f"lambda = {args.distill_scale} x max(0, {similarity:.3f}) = {weight:.3f}")
        extra = {"transferability": similarity, "lambda": weight}
        runs = []
        for seed in args.seeds:
            if args.teachers:
                teacher = inputs["teachers"][seed]
            else:
                teacher = finetune_seed(args, task, tok, data, seed, machine, init=source)["tuned"]
            logits = teacher_logits(args, task, tok, data, teacher, machine)
            runs.append(finetune_seed(args, task, tok, data, seed, machine, test, teacher=(logits, weight)))
    else:
        runs = [finetune_seed(args, task, tok, data, seed, machine, test, inputs.get("init"))
                for seed in args.seeds]
    metrics = list(task.metrics)
    table = np.array([[r["best"][m] for m in metrics] for r in runs])
    total = sum(p.numel() for p in classifier(args, task, machine).parameters())
    stored = total if args.tuning == "full" else sum(v.numel() for v in runs[0]["tuned"].values())
    report = {"task": name, "model": str(args.model), "tuning": args.tuning,
              "train_examples": len(data["train"]), "dev_examples": len(data["dev"]),
              "metric": task.metric, "seeds": args.seeds, "minutes": (time.time() - t0) / 60,
              "trainable_parameters": stored, "stored_parameters": stored, **extra,
              "mean": dict(zip(metrics, table.mean(0).tolist())),
              "std": dict(zip(metrics, table.std(0).tolist())),
              "runs": [{k: v for k, v in r.items() if k not in ("test_predictions", "tuned")} for r in runs]}
    if args.tuning == "prompt":  # what its prompts were tuned on (save_tuned records it beside them)
        report["model_fingerprint"] = inputs["fingerprint"]
    if args.save:
        shutil.rmtree(Path(args.save) / name, ignore_errors=True)  # empty, or --replace: no other run's seeds
        checkpoint.save_tuned(Path(args.save) / name, runs, task, report, args.prompt_init)
        log(f"  prompts: {Path(args.save) / name} (the best seed's; every seed's in seed-N/)")
    summary = ", ".join(f"{m} {100 * report['mean'][m]:.2f} ± {100 * report['std'][m]:.2f}"
                        for m in sorted(metrics))
    log(f"{name}: " + summary
        + f"  (dev, best epoch, {len(args.seeds)} seeds, {report['minutes']:.1f} min)")
    if args.predict:
        # the best seed's predictions, as a leaderboard entry would
        best = max(runs, key=lambda r: r["best"][task.metric])
        submission, text = glue.submission_rows(task, test, best["test_predictions"])
        Path(args.predict).mkdir(parents=True, exist_ok=True)
        (Path(args.predict) / submission).write_text(text, encoding="utf-8")
        log(f"  test predictions (seed {best['seed']}): {Path(args.predict) / submission}")
    return report


# -----------------------------------------------------------------------------
# 4. Command line


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Fine-tune a checkpoint on GLUE/SuperGLUE tasks; "
                                             "report the standard dev metrics.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    runtime.model_option(ap, default="runs/demo")
    ap.add_argument("--task", nargs="+", required=True, choices=sorted(glue.TASKS), metavar="TASK",
                    help=f"one or more of {', '.join(glue.TASKS)}")
    runtime.data_root_option(ap, holds="glue/<TASK>/ and superglue/<TASK>/")
    positive = runtime.number(int, at_least=1)
    runtime.seeds_option(ap, default=[1, 2, 3], help="one run per seed; the report gives mean and std")
    ap.add_argument("--epochs", type=positive, default=3,
                    help="passes over the training set; dev is scored after each")
    ap.add_argument("--batch-size", type=positive, default=32, help="examples per optimizer step")
    ap.add_argument("--lr", type=runtime.number(float, above=0), default=2e-5,
                    help="peak learning rate of AdamW")
    ap.add_argument("--warmup", type=runtime.number(float, at_least=0, at_most=1), default=0.1,
                    help="share of the steps spent warming up the learning rate")
    ap.add_argument("--weight-decay", type=runtime.number(float, at_least=0), default=0.01,
                    help="AdamW decay; biases and LayerNorm are never decayed")
    ap.add_argument("--dropout", type=runtime.number(float, at_least=0, below=1), default=0.1,
                    help="hidden and attention dropout")
    ap.add_argument("--max-length", type=positive, default=None,
                    help="tokens per input, at most the model's positions; pairs are cut longest side first; "
                         "None: 128, or the model's positions if it has fewer")
    ap.add_argument("--max-train", type=runtime.number(int, at_least=0), default=0,
                    help="fine-tune on at most this many training examples (0: all)")
    g = ap.add_argument_group("prompt tuning (Vega v2, PANDA)")
    g.add_argument("--tuning", choices=["full", "prompt"], default="full",
                   help="train every weight, or only a deep prompt and the head, the encoder frozen")
    g.add_argument("--prompt-length", type=positive, default=20,
                   help="prompt vectors per layer (keys and values)")
    g.add_argument("--prompt-init", metavar="RUN",
                   help="prompt transfer: start from the prompt a prompt-tuning "
                        "run saved (a folder with prompt.safetensors)")
    g.add_argument("--distill-from", metavar="RUN",
                   help="PANDA: distil from the prompt of this source run, "
                        "tuned on the task (the teacher), into a fresh prompt")
    g.add_argument("--target-prompt", metavar="RUN",
                   help="the task's own prompt, for the transferability, tuned from a random start (of the "
                        "source's seed, so that both started alike); None: trained first, from that start")
    g.add_argument("--teachers", metavar="RUN", help="teachers already tuned, one per seed in RUN/seed-N/ "
                                                     "(a --prompt-init run's --save); None: tuned here")
    g.add_argument("--distill-scale", type=runtime.number(float, at_least=0), default=1.0,
                   help="lambda = this x max(0, transferability)")
    g.add_argument("--save", metavar="DIR", help="keep each task's prompts and heads in DIR/TASK/ "
                                                 "(prompt tuning)")
    g.add_argument("--replace", action="store_true", help="--save into DIR/TASK/ folders that hold prompts, "
                                                          "after removing them")
    runtime.machine_options(ap)
    ap.add_argument("--out", default=None, help="write the report as JSON here")
    ap.add_argument("--predict", default=None, metavar="DIR",
                    help="also write test-set predictions in the GLUE/SuperGLUE submission format")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    prompt_options = ("prompt_init", "distill_from", "target_prompt", "teachers", "save")
    prompting = [o for o in prompt_options if getattr(args, o)]
    if prompting and args.tuning != "prompt":
        ap.error(f"--{prompting[0].replace('_', '-')} is for prompt tuning: add --tuning prompt")
    if args.prompt_init and args.distill_from:
        ap.error("--prompt-init and --distill-from: PANDA's student starts from scratch, its teacher from "
                 "--distill-from's prompt; give one of them")
    if (args.target_prompt or args.teachers) and not args.distill_from:
        ap.error("--target-prompt and --teachers go with --distill-from")
    try:  # the model is known now: a longer input than its positions would fail at the first batch
        folder = checkpoint.resolve_checkpoint(args.model)
        config = folder / "config.json"
        positions = EncoderConfig.from_json(config).max_positions
    except (OSError, ValueError) as e:
        ap.error(f"--model {args.model}: {e}")
    if (Path(args.model) / "latest").is_file():  # a train.py run folder: its latest checkpoint, once, for
        args.model = str(folder)                 # every seed and task, though the run goes on saving
    saved = [Path(args.save) / name for name in args.task] if args.save else []
    taken = [p.name for p in saved if p.is_dir() and any(p.iterdir())]
    if taken and not args.replace:
        ap.error(f"--save {args.save}: {', '.join(taken)} already hold(s) saved prompts; a later --teachers "
                 "or --prompt-init would mix them with this run's: choose another folder, or --replace")
    if args.tuning == "prompt" and EncoderConfig.from_json(config).num_hidden_layers == 0:
        ap.error(f"--tuning prompt: --model {args.model} has 0 layers, so its prompt (vectors in front of "
                 "each layer's attention) would be empty and only the head would learn")
    if args.max_length is None:
        args.max_length = min(128, positions)
    if args.max_length > positions:
        ap.error(f"argument --max-length: {args.max_length} is more than the model's {positions} positions")
    return args


def main(argv=None):
    args = parse_args(argv)
    machine = runtime.setup(args.device, args.precision)
    tok = Tokenizer(args.model)
    print(f"model {args.model} + a fresh classification head | "
          f"device {machine.device}, {machine.precision} | "
          f"epochs {args.epochs}, batch {args.batch_size}, lr {args.lr}, "
          f"seeds {' '.join(map(str, args.seeds))}")
    try:
        # every task's files and prompts read and checked first: a bad row of the last task's test file
        # would otherwise stop the command after the other tasks' training
        identity = model_identity(args)
        inputs = {name: task_inputs(args, name, identity) for name in args.task}
        reports = [run_task(args, name, tok, machine, inputs=inputs.pop(name)) for name in args.task]
    except (glue.FormatError, checkpoint.PromptError, OSError) as e:
        # a task or prompt file that is missing, not in its layout or not what the run needs: say where
        raise SystemExit(f"error: {e}") from None
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_json(args.out, reports)  # written whole or not at all: the ablation reads it
        print(f"report: {args.out}")
    return reports


if __name__ == "__main__":
    main()
