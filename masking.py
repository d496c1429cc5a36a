"""Which tokens to mask: random masking (BERT/RoBERTa) and self-questioning (SE).

Masked language modeling hides some tokens of a sequence and trains the model
to reconstruct them. This file decides *which* tokens are hidden, in the order
the method needs them:

1. Never mask the special tokens ([CLS], [SEP], <s>, </s>, padding, ...).
2. Decide how many tokens each sequence gets masked: the budget, 15% of its
   maskable tokens, rounded at random so the expectation is exact.
3. Random masking, the baseline and the fallback: pick the budget uniformly at
   random (optionally whole words) and corrupt them BERT's way, 80% [MASK],
   10% random token, 10% unchanged.
4. Self-questioning (SE stage 1): feed the *unmasked* sequence, score every
   token by how badly the model reconstructs a token it can see
   (s_i = -log p_i(x_i)) or how unsure it is (the entropy of p_i).
5. Select the informative tokens: the highest-scoring ones up to the budget
   (this project's rule), or every token with a score above a threshold (the
   authors' rule: loss > 0.1), optionally mixed with random tokens.
6. Corrupt the selection. The authors replace every informative token by the
   mask token; the labels keep the original ids there and IGNORE_INDEX
   elsewhere.
7. Your own rule: a function of a MaskingBatch that returns the selection,
   plugged into train.py with --masking-fn (the tutorial's exercises).

Which rule applies when, and the model's forward that the scores come from,
are self_evolution.py's business: this file never calls a model.

Every function works on whole batches at once (no loop over tokens or
sequences, no host-device sync), so it can run inside the training step on the
GPU. Every random function takes an optional torch.Generator and draws on the
device of its inputs, so a seed reproduces a mask.
"""

import functools
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # label at unselected positions; torch cross_entropy's default


def special_tokens_mask(input_ids, tokenizer_or_ids):
    """Step 1: True where a position may never be masked.

    `tokenizer_or_ids` is an object with a `special_ids` attribute (the
    project's tokenizer wrapper) or an iterable of token ids. Which ids are
    special ([CLS]/[SEP]/<s>/</s>/padding/[UNK]/mask) is the checkpoint's
    business, so nothing here names a token. The caller combines the result
    with the attention mask: maskable = ~special_tokens_mask(...) & attention.
    """
    ids = getattr(tokenizer_or_ids, "special_ids", tokenizer_or_ids)
    table = _id_table(tuple(sorted(int(i) for i in ids)), input_ids.dtype, input_ids.device)
    return torch.isin(input_ids, table)


@functools.lru_cache(maxsize=None)
def _id_table(ids, dtype, device):
    # Made once per device: copying a Python list to a GPU at every step
    # would make the host wait for the GPU each time.
    return torch.tensor(ids, dtype=dtype, device=device)


def budget(maskable, ratio=0.15, generator=None):
    """Step 2: how many tokens to mask in each sequence, shape (batch,).

    n * ratio rounded probabilistically, floor(n * ratio + U[0, 1)), where n is
    the sequence's number of maskable tokens. This is fairseq's rule
    (MaskTokensDataset: int(mask_prob * sz + np.random.rand())): a sequence of
    10 tokens gets 1 or 2 masks, 2 with probability 0.5, so the expected
    number is exactly n * ratio, even for short sequences. No minimum is
    forced: a short sequence may get 0. Consumes one uniform per sequence from
    `generator`, before any other draw of random_mask / select_informative.
    """
    n = maskable.sum(-1)
    u = torch.rand(n.shape, generator=generator, device=maskable.device)
    return torch.minimum((n * ratio + u).floor().long(), n)  # never more than n


def _rank(keys):
    """Rank of every position in its row when sorted by key, highest first.

    The sort is stable, so equal keys rank by position, lower position first:
    the same input always gives the same ranks.
    """
    order = keys.argsort(dim=-1, descending=True, stable=True)
    positions = torch.arange(keys.shape[-1], device=keys.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, positions)


def random_select(maskable, k, generator=None):
    """Select k[b] maskable positions of row b uniformly at random.

    Every maskable position gets a random key and the k highest keys win,
    which picks a uniformly random k-subset without a loop. Non-maskable
    positions get key -1, below every uniform draw, so they rank last. Shared
    by random_mask and select_informative so both consume the generator in
    the same way (one uniform per position).
    """
    keys = torch.rand(maskable.shape, generator=generator, device=maskable.device)
    keys = keys.masked_fill(~maskable, -1.0)
    return (_rank(keys) < k.unsqueeze(-1)) & maskable


def _random_select_words(input_ids, maskable, k, word_continuation, generator=None):
    """Whole-word version of random_select: words in random order up to k tokens.

    A maskable position starts a word unless its token continues the previous
    word (word_continuation[id], e.g. a WordPiece '##' piece, or a RoBERTa BPE
    token without the 'Ġ' marker) *and* the previous position is maskable, so
    a piece never joins a special token. Each word gets the random key of its
    first piece; words are taken in key order while the tokens of the words
    taken before them number < k. The selection therefore reaches k (when the
    sequence has k maskable tokens) and may overshoot it by the continuation
    pieces of the last word taken: at most the longest word's length minus one.
    (fairseq's whole-word masking draws its budget in words, so its token
    count varies more; BERT's script skips a word that would overflow.) Draws
    one uniform per position, like random_select, so with no continuation
    pieces both select the same positions.
    """
    previous = torch.nn.functional.pad(maskable[..., :-1], (1, 0), value=False)
    start = maskable & ~(word_continuation.to(input_ids.device)[input_ids] & previous)
    positions = torch.arange(input_ids.shape[-1], device=input_ids.device).expand_as(input_ids)
    # Every maskable position points to its word's first piece, which then
    # stands for the word: it holds the word's length and its random key.
    first = torch.where(start, positions, 0).cummax(-1).values
    length = torch.zeros_like(first).scatter_add(-1, first, maskable.long())
    keys = torch.rand(maskable.shape, generator=generator, device=maskable.device)
    order = keys.masked_fill(~start, -1.0).argsort(dim=-1, descending=True, stable=True)
    # Non-starts sort last (key -1, length 0): all n maskable tokens come
    # before them and k <= n, so they are never taken themselves.
    sorted_length = length.gather(-1, order)
    tokens_before = sorted_length.cumsum(-1) - sorted_length
    taken = torch.zeros_like(start).scatter(-1, order, tokens_before < k.unsqueeze(-1))
    return taken.gather(-1, first) & maskable


def labels_for(input_ids, selected):
    """The MLM targets: the original id where selected, IGNORE_INDEX elsewhere."""
    return input_ids.masked_fill(~selected, IGNORE_INDEX)


def apply_mask(input_ids, selected, mask_id, vocab_size=None, split=(1.0, 0.0, 0.0),
               generator=None):
    """Steps 3 and 6: corrupt the selected positions; returns a new tensor.

    split = (p_mask, p_random, p_keep). The default (1, 0, 0) is the authors'
    rule for informative tokens: every selected token becomes the mask token.
    (0.8, 0.1, 0.1) is BERT's rule: 80% mask token, 10% a token drawn uniformly
    from the whole vocabulary (fairseq leaves out its special symbols), 10%
    unchanged, so the model cannot assume that an unmasked token is correct.
    The default split draws no random numbers.
    """
    p_mask, p_random, p_keep = split
    if abs(p_mask + p_random + p_keep - 1.0) > 1e-6:
        raise ValueError(f"split must sum to 1, got {split}")
    if p_mask == 1.0:
        return input_ids.masked_fill(selected, mask_id)
    if p_random > 0 and vocab_size is None:
        raise ValueError("vocab_size is required when split[1] (p_random) > 0")
    u = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    out = input_ids.masked_fill(selected & (u < p_mask), mask_id)
    if p_random > 0:
        to_random = selected & (u >= p_mask) & (u < p_mask + p_random)
        random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator,
                                   device=input_ids.device, dtype=input_ids.dtype)
        out = torch.where(to_random, random_ids, out)
    return out


def random_mask(input_ids, maskable, mask_id, vocab_size, ratio=0.15, generator=None,
                word_continuation=None, split=(0.8, 0.1, 0.1)):
    """Step 3: BERT/RoBERTa random masking; returns (corrupted, labels, selected).

    `maskable` is ~special_tokens_mask(input_ids, ...) & attention_mask. Each
    sequence gets exactly budget(maskable, ratio) positions, uniformly at
    random among its maskable ones, corrupted with `split` (BERT's 80/10/10 by
    default). With `word_continuation`, a bool table of size vocab, whole words
    are selected instead (see _random_select_words for the overshoot rule).
    This is also the authors' fallback for examples without informative
    positions. Generator order: budget, selection keys, then corruption.
    """
    k = budget(maskable, ratio, generator)
    if word_continuation is None:
        selected = random_select(maskable, k, generator)
    else:
        selected = _random_select_words(input_ids, maskable, k, word_continuation, generator)
    corrupted = apply_mask(input_ids, selected, mask_id, vocab_size, split, generator)
    return corrupted, labels_for(input_ids, selected), selected


def score_tokens(logits, input_ids, kind="loss"):
    """Step 4, self-questioning: score each token from an UNMASKED forward.

    kind="loss" (the paper's correlation-based score): s_i = -log p_i(x_i),
    the loss on a token the model can see in its input; near 0 means learned.
    The authors' code takes this per-token loss from a fairseq pass at lr 0.
    kind="entropy" (confidence-based): s_i = -sum_v p_i(v) log p_i(v).
    Works on any leading shape: (batch, length, vocab) with (batch, length),
    or (n, vocab) with (n,) when only some positions were projected. Always
    float32, since bf16/fp16 log-probabilities are too coarse to rank tokens.
    """
    if logits.shape[:-1] != input_ids.shape:  # broadcasting or a flattened gather would hide it
        raise ValueError(f"score_tokens: logits {tuple(logits.shape)} do not match input_ids "
                         f"{tuple(input_ids.shape)} (expected input_ids' shape + (vocab,))")
    logits = logits.float()
    if kind == "loss":
        # -log p(x) is the cross-entropy of the token itself: PyTorch's fused
        # log-softmax, faster than logsumexp(z) - z[x].
        nll = F.cross_entropy(logits.flatten(0, -2), input_ids.flatten().long(), reduction="none")
        return nll.view(input_ids.shape)
    if kind == "entropy":
        # entr(p) = -p log p with entr(0) = 0, so vocab entries at -inf are harmless.
        return torch.special.entr(logits.softmax(-1)).sum(-1)
    raise ValueError(f"unknown score kind {kind!r}; expected 'loss' or 'entropy'")


def select_informative(scores, maskable, ratio=0.15, threshold=None, informative_fraction=1.0,
                       generator=None):
    """Step 5: choose the positions to mask from the self-questioning scores.

    Threshold mode (threshold given, the authors' rule with 0.1 on the loss):
    every maskable token whose score is > threshold; ratio is ignored and the
    number masked varies with the model.
    Ratio mode (this project's default): per sequence the budget(maskable,
    ratio) highest-scoring maskable tokens, ties to the lower position, so the
    task keeps the size of random masking. `informative_fraction` spends
    round(fraction * budget) (half to even) on the top scores and the rest on
    uniformly random other maskable tokens; at 0 the selection equals
    random_mask's for the same generator state (same budget draw, then the
    same key draw). NaN scores and non-maskable positions are never selected.
    """
    valid = maskable & ~scores.isnan()
    if threshold is not None:
        return valid & (scores > threshold)
    k = budget(maskable, ratio, generator)
    n_top = torch.round(informative_fraction * k).long()
    top = (_rank(scores.masked_fill(~valid, float("-inf"))) < n_top.unsqueeze(-1)) & valid
    if informative_fraction >= 1.0:
        return top
    return top | random_select(valid & ~top, k - n_top, generator)


# -----------------------------------------------------------------------------
# 7. Your own masking rule (train.py --masking-fn FILE.py:FUNCTION)


@dataclass
class MaskingBatch:
    """What a masking function may look at for one micro-batch.

    A masking function takes a MaskingBatch and returns a (batch, length) bool
    tensor: True where a token is to be masked. train.py then corrupts the
    selection (--informative-split), trains on it, and applies the label
    smoothing of --smoothing. Positions outside `maskable` are never masked,
    whatever the function returns.

    The contract: a rule is a pure function of its batch. It draws every
    random number from `generator` and keeps nothing between calls (no
    module-level counter, cache or random state): a run's masks then follow
    from (seed, step, micro-batch) alone, and a resumed run repeats an
    uninterrupted one. As the method begins, train.py (probe.method_start)
    asks a rule twice about the sample sentence and refuses one whose two
    answers differ.
    """
    input_ids: torch.Tensor          # (batch, length) token ids, unmasked
    maskable: torch.Tensor           # (batch, length) bool: False at special tokens and padding
    ratio: float = 0.15              # the masking budget, --ratio
    generator: torch.Generator | None = None  # draw every random number from it: a seed reproduces the mask
    continuation: torch.Tensor | None = None  # (vocab,) bool: the token continues a word (WordPiece "##x")
    # (vocab,) occurrences in the training blocks (0 for unseen tokens)
    token_counts: torch.Tensor | None = None
    progress: float = 0.0            # 0 at the method's first step, 1 at its last (for curricula)
    question: Callable | None = field(default=None, repr=False)  # input_ids -> logits of the unmasked batch
    # offline: scores of a pass before training
    stored_scores: torch.Tensor | None = field(default=None, repr=False)
    _logits: torch.Tensor | None = field(default=None, repr=False)

    def logits(self) -> torch.Tensor:
        """(batch, length, vocab) logits of the model on the UNMASKED batch (self-questioning).

        Computed on first use (no gradient, eval mode) and kept: the reference
        of token-specific label smoothing reuses it.
        """
        if self._logits is None:
            if self.question is None:
                raise RuntimeError("this MaskingBatch has no model to question")
            self._logits = self.question(self.input_ids)
        return self._logits

    def cached_logits(self) -> torch.Tensor | None:
        """The logits if the rule asked for them, else None (training reuses them as TLS references)."""
        return self._logits

    def scores(self, kind="loss") -> torch.Tensor:
        """(batch, length) self-questioning scores, as score_tokens computes them.

        With `stored_scores` (offline questioning: computed before training),
        those, without a forward; they are of the kind the run chose.
        """
        if self.stored_scores is not None:
            return self.stored_scores
        return score_tokens(self.logits(), self.input_ids, kind)


def load_masking_fn(spec: str) -> Callable:
    """The function FUNCTION of the Python file FILE.py named by "FILE.py:FUNCTION"."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not name:
        raise ValueError(f"--masking-fn {spec!r}: expected FILE.py:FUNCTION")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--masking-fn {spec!r}: no file {path}")
    module_name = f"masking_fn_{Path(path).stem}"
    loader = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader)
    sys.modules[module_name] = module
    loader.loader.exec_module(module)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"--masking-fn {spec!r}: {path} defines no function {name}")
    return fn


def custom_select(fn: Callable, batch: MaskingBatch) -> torch.Tensor:
    """Run a masking function and check what it returns (shape and type; no host sync)."""
    selected = fn(batch)
    if (not isinstance(selected, torch.Tensor) or selected.dtype != torch.bool
            or selected.shape != batch.input_ids.shape):
        got = (f"{selected.dtype} tensor of shape {tuple(selected.shape)}"
               if isinstance(selected, torch.Tensor) else type(selected).__name__)
        raise TypeError(f"masking function {getattr(fn, '__name__', fn)} must return a bool tensor of shape "
                        f"{tuple(batch.input_ids.shape)}, got a {got}")
    return selected & batch.maskable
