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
  2. Informative masking                                 select(), mask_batch()
     Mask the highest-scoring tokens, up to the usual 15% budget (this
     project's rule), or every token scoring above 0.1 (the authors' rule);
     the authors replace every selected token by the mask token.
  3. Stage 2, self-evolution training                                  loss()
     Reconstruct them with token-specific label smoothing: the target mixes
     the one-hot label with r_i, the model's own distribution at i on the
     unmasked x, which is the very forward of stage 1, kept at the masked
     positions.

micro_batch_loss() runs these steps for one micro-batch, in that order;
runtime.train_step() runs it over a batch and updates the weights. The rules
themselves are in masking.py (which tokens) and smoothing.py (the losses):
this file decides which rule applies when, and feeds each what it needs.

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

from masking import (IGNORE_INDEX, MaskingBatch, apply_mask, custom_select, load_masking_fn, random_mask,
                     score_tokens, select_informative, special_tokens_mask)
from smoothing import cross_entropy, token_specific_label_smoothing, uniform_label_smoothing

# -----------------------------------------------------------------------------
# 0. The settings

# A run's two phases: a checkpoint without an MLM head first trains one with
# random masking and plain cross-entropy (the warm-up); then the method runs.
WARM_UP, MAIN = "warm-up", "main"


@dataclass(frozen=True)
class Method:
    """The method's settings: train.py's "method" options, under the same names.

    The defaults are the authors' where their code has one (the budget and the
    no-grad pass are this project's choices: ../shared/PAPER_NOTES.md).
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
    questioning_precision: str = "fp32"  # the questioning forward's: "fp32", "bf16" or "fp16" (it only ranks)
    masking_fn: str | None = None  # "FILE.py:FUNCTION": a rule of your own instead of `masking`
    rule: Callable | None = None  # that function, loaded (a function of a masking.MaskingBatch)

    @classmethod
    def from_options(cls, args) -> "Method":
        """The settings of train.py's parsed options; loads the --masking-fn file (OSError, ValueError)."""
        settings = {f.name: getattr(args, f.name) for f in fields(cls) if f.name != "rule"}
        settings["informative_split"] = tuple(settings["informative_split"])
        return cls(**settings, rule=load_masking_fn(args.masking_fn) if args.masking_fn else None)


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


def offline_scores(method, model, blocks, path, batch_size, machine, quiet=False):
    """Stage 1 the authors' way: score every training block once, before training.

    The authors run a separate fairseq pass at learning rate 0 and keep the
    positions with loss > 0.1; keeping the scores instead (float32, one row per
    block, in the .npy file `path`) lets either rule, ratio or threshold, select
    from them. Training then reads its rows and computes only the references.
    Under torchrun the processes (of one machine: they share the file's pages)
    score their shares of the blocks into the same file; all of them must call
    this together.
    """
    tmp = str(path) + ".tmp.npy"
    if machine.main:
        shape = (len(blocks), blocks.block_length)
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape).flush()
    machine.barrier()
    scores = np.load(tmp, mmap_mode="r+")
    starts = range(machine.rank * batch_size, len(blocks), machine.world * batch_size)
    for start in tqdm(starts, desc="self-questioning pass", disable=quiet or not machine.main):
        rows = np.arange(start, min(len(blocks), start + batch_size))
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


def masking_batch(method, model, tok, input_ids, generator, progress=0.0, token_counts=None, scores=None):
    """What a masking rule sees of a micro-batch (masking.MaskingBatch).

    The model is questioned only if the rule asks for its scores or logits;
    offline, `scores` are the stored ones and nothing is asked.
    """
    maskable = ~special_tokens_mask(input_ids, tok)
    def ask(ids):
        return question(model, ids, precision=method.questioning_precision)
    return MaskingBatch(input_ids, maskable, method.ratio, generator, tok.continuation, token_counts,
                        progress, question=ask, stored_scores=scores)


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


class Masked(NamedTuple):
    """One micro-batch made ready for the loss."""

    corrupted: torch.Tensor  # (batch, length): the input of the training forward
    positions: torch.Tensor  # (n,) flat indices of the selected tokens, padded to a size fixed in advance
    targets: torch.Tensor  # (n,) their original ids; IGNORE_INDEX in the padding
    reference: torch.Tensor | None  # (n, vocab) the unmasked forward's logits there (TLS's r_i), else None


def mask_batch(method, model, tok, input_ids, generator, phase=MAIN, progress=0.0, scores=None,
               token_counts=None) -> Masked:
    """Choose and corrupt the tokens of one micro-batch; gather what the loss needs.

    `phase` is WARM_UP or MAIN, `progress` how far the method has come (0 at
    its first step, 1 at its last: for curricula), `scores` the stored scores
    of offline questioning, `token_counts` the corpus's (for --masking-fn).
    """
    logits = None
    if phase == WARM_UP or (method.masking == "random" and method.rule is None):
        # The baseline, and the warm-up of a fresh MLM head: BERT's random masking, 80/10/10.
        maskable = ~special_tokens_mask(input_ids, tok)
        continuation = tok.continuation if method.whole_word else None
        corrupted, _, selected = random_mask(input_ids, maskable, tok.mask_id, tok.vocab_size, method.ratio,
                                             generator, continuation)
    else:
        # Stage 1 and informative masking: the rule's first look at the scores
        # questions the model (one unmasked no-grad forward); offline they are stored.
        batch = masking_batch(method, model, tok, input_ids, generator, progress, token_counts, scores)
        selected = select(method, batch)
        corrupted = apply_mask(input_ids, selected, tok.mask_id, tok.vocab_size, method.informative_split,
                               generator)
        logits = batch.cached_logits()
    positions, valid = flat_positions(selected, max_selected(method, input_ids.shape))
    targets = torch.where(valid, input_ids.flatten()[positions], IGNORE_INDEX)
    reference = None
    if method.smoothing == "token" and phase == MAIN:
        # r_i at the masked positions: from the questioning forward when there
        # was one (kept only where a token is masked), else a forward projected there.
        if logits is not None:
            reference = logits.flatten(0, 1)[positions]
        else:
            reference = question(model, input_ids, positions, method.questioning_precision)
    return Masked(corrupted, positions, targets, reference)


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


def loss(method, logits, targets, reference, phase=MAIN):
    """The loss at the masked tokens, a mean over them: TLS (stage 2), or the baseline's."""
    if phase == WARM_UP or method.smoothing == "none":
        return cross_entropy(logits, targets)
    if method.smoothing == "uniform":
        return uniform_label_smoothing(logits, targets, method.alpha)
    return token_specific_label_smoothing(logits, targets, reference, method.alpha)


# -----------------------------------------------------------------------------
# 4. One micro-batch, start to end


def micro_batch_loss(method, model, tok, input_ids, generator, phase=MAIN, progress=0.0, scores=None,
                     token_counts=None, wrapped=None):
    """One micro-batch of SE: question, select and corrupt (mask_batch), then the
    training forward on the corrupted input, projected at the masked positions
    only, and the loss. Returns the loss and the number of masked tokens it is
    a mean over (a rule that masks nothing trains on nothing: training says so).

    `model` is the one questioned; `wrapped` (default: `model`) is what the
    training forward runs through, the same model behind DDP or torch.compile.
    """
    masked = mask_batch(method, model, tok, input_ids, generator, phase=phase, progress=progress,
                        scores=scores, token_counts=token_counts)
    logits = (model if wrapped is None else wrapped)(masked.corrupted, positions=masked.positions)
    n_masked = (masked.targets != IGNORE_INDEX).sum()
    return loss(method, logits, masked.targets, masked.reference, phase), n_masked
