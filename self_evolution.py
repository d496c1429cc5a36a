"""
self_evolution.py -- the method: one micro-batch of self-evolution learning, in the paper's order.

Zhong et al., "Self-Evolution Learning for Discriminative Language Model
Pretraining" (Findings of ACL 2023), section 3. Random masking spends most of
its budget on tokens a pretrained model already knows ("the", "a", full
stops). SE lets the model itself say which tokens it has not learned yet,
and trains on those:

  1. Stage 1, self-questioning                                     question()
     Feed the UNMASKED sequence x and read p_i = p(. | x) at every position,
     without gradient and in eval mode (the authors run a pass at learning
     rate 0). A token the model cannot reconstruct although it sees it, a
     high s_i = -log p_i(x_i), is one it has not learned.
  2. Informative masking                                    select(), corrupt()
     Mask the highest-scoring tokens, up to the usual 15% budget (this
     project's rule), or every token scoring above 0.1 (the authors' rule);
     the authors replace every selected token by the mask token.
  3. Stage 2, self-evolution training                                  loss()
     Reconstruct them with token-specific label smoothing: the target mixes
     the one-hot label with r_i, the model's own distribution at i on the
     unmasked x, which is the very forward of stage 1, kept at the masked
     positions.

micro_batch_loss() runs these steps for one micro-batch, in that order. It is
the one function through which train.py's loop calls the method, so a second
pretraining method plugs in beside this file with a function of the same
shape; runtime.train_step() runs it over a batch and updates the weights. The
rules themselves are in masking.py (which tokens) and smoothing.py (the
losses): this file decides which rule applies when, and feeds each what it
needs.

Two ways to question (train.py --questioning). Online, this project's
default: one extra no-grad forward per step gives both the scores and the
references. Offline, the authors' way: one pass over the whole corpus before
training (offline_scores), then only the reference forward in each step.
"""

import os
from dataclasses import dataclass, fields
from typing import Callable, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

import runtime
from masking import (IGNORE_INDEX, MaskingBatch, apply_mask, custom_select, load_masking_fn, random_mask,
                     score_tokens, select_informative, special_tokens_mask)
from smoothing import cross_entropy, token_specific_label_smoothing, uniform_label_smoothing

# -----------------------------------------------------------------------------
# 0. The settings

# A run's two phases: a checkpoint without an MLM head first trains one with
# random masking and plain cross-entropy (train.py --head-steps); then the method runs.
HEAD, METHOD = "head", "method"


@dataclass(frozen=True)
class Method:
    """The method's settings: train.py's "method" options, under the same names.

    The defaults are the authors' where their code has one (the budget and the
    no-grad pass are this project's choices: docs/paper.md).
    """

    masking: str = "informative"  # "random": BERT's (the baseline); "informative": self-questioning's picks
    score: str = "loss"  # "loss": -log p_i(x_i), the paper's correlation-based score; "entropy": confidence
    select: str = "ratio"  # "ratio": the top tokens up to the budget; "threshold": every token above it
    ratio: float = 0.15  # the masking budget: a share of each sequence's maskable tokens
    threshold: float = 0.1  # the authors' threshold on the score, for select="threshold"
    informative_fraction: float = 1.0  # share of the budget spent on the top scores; the rest goes at random
    informative_split: tuple = (1.0, 0.0, 0.0)  # selected informative tokens: p(mask), p(random), p(keep)
    whole_word: bool = False  # random masking picks whole words
    smoothing: str = "token"  # "none": cross-entropy; "uniform": label smoothing; "token": TLS (stage 2)
    alpha: float = 0.1  # the label-smoothing weight
    questioning: str = "online"  # "online": scored in the step; "offline": one pass before (the authors')
    questioning_precision: str = "fp32"  # the questioning forward's: "fp32", "bf16" or "fp16" (it only ranks)
    masking_fn: str | None = None  # "FILE.py:FUNCTION": a rule of your own instead of `masking`
    rule: Callable | None = None  # that function, loaded (a function of a masking.MaskingBatch)

    @staticmethod
    def add_options(group):
        """train.py's options of the method, one per setting, with the defaults above."""
        M, number = Method, runtime.number
        share = number(float, at_least=0, at_most=1)
        group.add_argument("--masking", choices=["random", "informative"], default=M.masking,
                           help="BERT's random masking, or the tokens self-questioning finds hardest")
        group.add_argument("--score", choices=["loss", "entropy"], default=M.score,
                           help="self-questioning score")
        group.add_argument("--select", choices=["ratio", "threshold"], default=M.select,
                           help="top tokens up to --ratio, or every token above --threshold (the authors')")
        group.add_argument("--ratio", type=number(float, above=0, at_most=1), default=M.ratio,
                           help="masking budget per sequence")
        group.add_argument("--threshold", type=number(float), default=M.threshold,
                           help="score threshold for --select threshold (refused with --select ratio)")
        group.add_argument("--informative-fraction", type=share, default=M.informative_fraction,
                           help="share of the budget spent on top-scoring tokens; the rest is random")
        group.add_argument("--informative-split", type=share, nargs=3, default=list(M.informative_split),
                           metavar=("MASK", "RANDOM", "KEEP"),
                           help="how selected informative tokens are corrupted; the authors mask them all")
        group.add_argument("--whole-word", action="store_true", help="random masking selects whole words")
        group.add_argument("--masking-fn", metavar="FILE.py:FUNCTION", default=M.masking_fn,
                           help="your own masking rule instead of --masking: a function of a "
                                "masking.MaskingBatch that returns the bool selection (see "
                                "tutorial/exercises); the selection is corrupted by --informative-split")
        group.add_argument("--questioning", choices=["online", "offline"], default=M.questioning,
                           help="score tokens in the training step (one extra forward) or in one pass before "
                                "training (the authors' way)")
        group.add_argument("--questioning-precision", choices=["auto", "bf16", "fp16", "fp32"],
                           default="auto",
                           help="of the questioning forward alone (it only ranks tokens and gives TLS its "
                                "targets): auto: bf16 where the device computes it natively, else the "
                                "training precision")
        group.add_argument("--smoothing", choices=["none", "uniform", "token"], default=M.smoothing,
                           help="plain cross-entropy, ordinary label smoothing, or token-specific label "
                                "smoothing (stage 2)")
        group.add_argument("--alpha", type=share, default=M.alpha, help="label-smoothing weight")

    @classmethod
    def from_options(cls, args) -> "Method":
        """The settings of train.py's parsed options (a --threshold not typed is None there). Loads the
        --masking-fn file; settings that contradict each other are a ValueError, as is a bad file."""
        if args.threshold is not None and args.select != "threshold":
            raise ValueError(f"--threshold {args.threshold} is used only with --select threshold")
        if abs(sum(args.informative_split) - 1) > 1e-6:
            raise ValueError(f"--informative-split {' '.join(map(str, args.informative_split))}: the three "
                             "shares must sum to 1")
        if args.masking_fn and args.questioning == "offline":
            raise ValueError("--masking-fn questions the model online, when the function asks for it; "
                             "drop --questioning offline")
        settings = {f.name: getattr(args, f.name) for f in fields(cls) if f.name != "rule"}
        settings["threshold"] = cls.threshold if args.threshold is None else args.threshold
        settings["informative_split"] = tuple(settings["informative_split"])
        return cls(**settings, rule=load_masking_fn(args.masking_fn) if args.masking_fn else None)


@dataclass(frozen=True)
class MaskingContext:
    """Where a micro-batch stands, beyond its token ids: what masking may need to know of the run."""

    phase: str = METHOD  # HEAD (random masking for a fresh MLM head) or METHOD
    progress: float = 0.0  # how far the method has come: 0 at its first step, 1 at its last (for curricula)
    token_counts: torch.Tensor | None = None  # (vocab,) the corpus's, for a --masking-fn rule
    stored_scores: torch.Tensor | None = None  # (batch, length) offline questioning's scores of these blocks


# -----------------------------------------------------------------------------
# 1. Stage 1: self-questioning


def question(model, input_ids, positions=None, precision="fp32"):
    """Ask the model about the UNMASKED sequence: its logits, in eval mode (no dropout)
    and without gradient, as in the authors' pass at learning rate 0.

    The scores of stage 1 come from these logits (masking.score_tokens:
    -log p_i(x_i), or the entropy of p_i), and so do the references r_i of
    stage 2 at the masked positions: one forward serves both. With
    `positions` (flat indices) the logits are projected only there. No
    attention mask: training blocks are packed full, without padding.

    `precision`: of this forward alone, whatever the training step's. It only
    ranks tokens and supplies targets, so bf16 serves (the authors ran it in
    fp16) even when training runs in fp32; scores and losses are computed from
    the logits in float32.
    """
    was_training = model.training
    model.eval()
    # Not runtime.autocast_for: fp32 here must switch off the training step's autocast around it.
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    with torch.no_grad(), torch.autocast(input_ids.device.type, dtype=dtype, enabled=dtype is not None,
                                         cache_enabled=False):
        logits = model(input_ids, positions=positions)
    model.train(was_training)
    return logits


def offline_scores(method, model, blocks, path, batch_size, machine, quiet=False, stop=None):
    """Stage 1 the authors' way: score every training block once, before training.

    The authors run a separate fairseq pass at learning rate 0 and keep the
    positions with loss > 0.1; keeping the scores instead (float32, one row per
    block, in the .npy file `path`) lets either rule, ratio or threshold, select
    from them. Training then reads its rows and computes only the references.
    Under torchrun the processes (of one machine: they share the file's pages)
    score their shares of the blocks into the same file; all of them must call
    this together. With `stop` (a runtime.StopRequest), Ctrl-C ends the pass
    between two batches: None is returned and nothing is kept. Scores already
    in `path` (a resumed run's) are read back, their shape checked.
    """
    if os.path.exists(path):
        scores = np.load(path, mmap_mode="r")
        if scores.shape != (len(blocks), blocks.block_length):
            raise SystemExit(f"{path}: the scores of {scores.shape[0]} blocks of {scores.shape[1]} tokens, "
                             f"for a corpus of {len(blocks)} blocks of {blocks.block_length}")
        return scores
    tmp = str(path) + ".tmp.npy"
    if machine.main:
        shape = (len(blocks), blocks.block_length)
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape).flush()
    machine.barrier()
    scores = np.load(tmp, mmap_mode="r+")
    rounds = -(-len(blocks) // (machine.world * batch_size))  # as many for every process: they vote in each
    for r in tqdm(range(rounds), desc="self-questioning pass", disable=quiet or not machine.main):
        if stop is not None and machine.anyone(stop.requested):  # Ctrl-C: between two batches
            del scores
            machine.barrier()
            if machine.main:
                os.remove(tmp)
            return None
        rows = np.arange((r * machine.world + machine.rank) * batch_size, len(blocks))[:batch_size]
        if len(rows):
            ids = blocks.batch(rows).to(machine.device)
            s = score_tokens(question(model, ids, precision=method.questioning_precision), ids, method.score)
            scores[rows] = s.cpu().numpy()
    scores.flush()
    del scores
    machine.barrier()
    if machine.main:
        os.replace(tmp, path)
    machine.barrier()
    return np.load(path, mmap_mode="r")


# -----------------------------------------------------------------------------
# 2. Informative masking: select, then corrupt


def rule_input(method, model, tok, input_ids, generator, context=MaskingContext()):
    """What a masking rule sees of a micro-batch: a masking.MaskingBatch.

    The model is questioned only if the rule asks for its scores or logits;
    offline, the context's stored scores serve and nothing is asked.
    """
    maskable = ~special_tokens_mask(input_ids, tok)
    def ask(ids):
        return question(model, ids, precision=method.questioning_precision)
    return MaskingBatch(input_ids, maskable, method.ratio, generator, tok.continuation, context.token_counts,
                        context.progress, question=ask, stored_scores=context.stored_scores)


def select(method, batch):
    """The tokens to mask in a batch, by the method's rule: a (batch, length) bool tensor.

    The project's one selection: training, the hardest-token evaluation, the
    picks in the sample sentence and the score page all come from here.
    Built in, the highest self-questioning scores up to the budget, or every
    score above the threshold (masking.select_informative); or your own rule.
    """
    if method.rule is not None:  # --masking-fn: it questions the model if it needs to
        return custom_select(method.rule, batch)
    threshold = method.threshold if method.select == "threshold" else None
    return select_informative(batch.scores(method.score), batch.maskable, method.ratio, threshold,
                              method.informative_fraction, batch.generator)


def check_rule(method, model, tok, input_ids, context=MaskingContext()):
    """Refuse a --masking-fn rule that is not a pure function of its batch (masking.MaskingBatch's
    contract): asked twice about the same batch with the same generator, it must answer alike. A rule
    that keeps state between calls would make a resumed run differ from an uninterrupted one."""
    answers = [select(method, rule_input(method, model, tok, input_ids,
                                          torch.Generator(input_ids.device).manual_seed(0), context))
               for _ in range(2)]
    if not torch.equal(*answers):
        raise SystemExit(f"--masking-fn {method.masking_fn}: asked twice about the same batch with the same "
                         "generator, it selected different tokens; a rule must be a pure function of its "
                         "batch (random numbers from batch.generator only, no state kept between calls)")


class Corrupted(NamedTuple):
    """One micro-batch made ready for the loss: its corrupted input and what the loss compares."""

    input_ids: torch.Tensor  # (batch, length): the input of the training forward
    positions: torch.Tensor  # (n,) flat indices of the selected tokens, padded to a size fixed in advance
    targets: torch.Tensor  # (n,) their original ids; IGNORE_INDEX in the padding
    reference: torch.Tensor | None  # (n, vocab) the unmasked forward's logits there (TLS's r_i), else None


def corrupt(method, model, tok, input_ids, generator, context=MaskingContext()) -> Corrupted:
    """Choose and corrupt the tokens of one micro-batch; gather what the loss needs."""
    logits = None
    if context.phase == HEAD or (method.masking == "random" and method.rule is None):
        # The baseline, and the training of a fresh MLM head: BERT's random masking, 80/10/10.
        maskable = ~special_tokens_mask(input_ids, tok)
        continuation = tok.continuation if method.whole_word else None
        corrupted, _, selected = random_mask(input_ids, maskable, tok.mask_id, tok.vocab_size, method.ratio,
                                             generator, continuation)
    else:
        # Stage 1 and informative masking: the rule's first look at the scores
        # questions the model (one unmasked no-grad forward); offline they are stored.
        batch = rule_input(method, model, tok, input_ids, generator, context)
        selected = select(method, batch)
        corrupted = apply_mask(input_ids, selected, tok.mask_id, tok.vocab_size, method.informative_split,
                               generator)
        logits = batch.cached_logits()
    positions, valid = flat_positions(selected, max_selected(method, input_ids.shape))
    targets = torch.where(valid, input_ids.flatten()[positions], IGNORE_INDEX)
    reference = None
    if method.smoothing == "token" and context.phase == METHOD:
        # r_i at the masked positions: from the questioning forward when there
        # was one (kept only where a token is masked), else a forward projected there.
        if logits is not None:
            reference = logits.flatten(0, 1)[positions]
        else:
            reference = question(model, input_ids, positions, method.questioning_precision)
    return Corrupted(corrupted, positions, targets, reference)


def max_selected(method, shape):
    """An upper bound of the tokens one micro-batch can select, known on the host."""
    batch, length = shape
    budgeted = ((method.masking == "random" and not method.whole_word) or
                (method.masking == "informative" and method.select == "ratio"))
    return batch * (int(length * method.ratio) + 1) if budgeted and method.rule is None else batch * length


def flat_positions(selected, size):
    """Indices of the selected tokens in the flattened batch, padded to `size`; and which are real.

    A boolean selection has a data-dependent size, and using one to index makes
    the GPU report that size to the host and wait. With a size fixed in
    advance (an upper bound of the budget) nothing waits; the unused slots
    point at token 0 and are marked invalid.
    """
    idx = torch.nonzero_static(selected.flatten(), size=size, fill_value=-1).squeeze(1)
    return idx.clamp(min=0), idx >= 0


# -----------------------------------------------------------------------------
# 3. Stage 2: the loss


def loss(method, logits, targets, reference, phase=METHOD):
    """The loss at the masked tokens, a mean over them: TLS (stage 2), or the baseline's."""
    if phase == HEAD or method.smoothing == "none":
        return cross_entropy(logits, targets)
    if method.smoothing == "uniform":
        return uniform_label_smoothing(logits, targets, method.alpha)
    return token_specific_label_smoothing(logits, targets, reference, method.alpha)


# -----------------------------------------------------------------------------
# 4. One micro-batch, start to end


def micro_batch_loss(method, model, tok, input_ids, generator, context=MaskingContext(), wrapped=None):
    """One micro-batch of SE: question, select and corrupt (corrupt()), then the
    training forward on the corrupted input, projected at the masked positions
    only, and the loss. Returns the loss and the number of masked tokens it is
    a mean over (a rule that masks nothing trains on nothing: training says so).

    `model` is the one questioned; `wrapped` (default: `model`) is what the
    training forward runs through, the same model behind DDP or torch.compile.
    """
    batch = corrupt(method, model, tok, input_ids, generator, context)
    logits = (model if wrapped is None else wrapped)(batch.input_ids, positions=batch.positions)
    n_masked = (batch.targets != IGNORE_INDEX).sum()
    return loss(method, logits, batch.targets, batch.reference, context.phase), n_masked
