"""
electra.py -- the method: one micro-batch of ELECTRA's pretraining, in the paper's order.

Clark, Luong, Le and Manning, "ELECTRA: Pre-training Text Encoders as
Discriminators Rather Than Generators" (ICLR 2020), section 2. A masked
language model (BERT; SE in self_evolution.py) learns only from the 15% of the
tokens it masks. ELECTRA's model learns from every token: a small MLM, the
generator G, fills the masked positions with its own samples, plausible and
often wrong, and the discriminator D, the model that is kept, says of every
token whether it is the original or a replacement (replaced token detection).

  1. The two networks                          ElectraPretraining, generator_config()
     D is any BERT-layout encoder with a one-logit head (model.Discriminator);
     G is an MLM with D's layer count and a fraction of its width (model.MaskedLM).
     They share the word, position and token-type embeddings and the embedding
     LayerNorm: one set of tensors, trained by both losses.
  2. Mask                                      mask()
     15% of the non-special tokens of each sequence (25% for large models);
     85% of them become [MASK] and 15% keep their token; no random tokens.
  3. Generate and sample                       ElectraPretraining.forward, gumbel_max()
     G predicts the masked tokens, and at every masked position a token is
     drawn from its softmax at temperature 1 (Gumbel-max, in float32); no
     gradient flows into G through the draw.
  4. Detect                                    replace(), ElectraPretraining.forward
     D reads the original sequence with every masked position (the kept 15%
     included) overwritten by G's sample. A position is "replaced" where its
     token differs from the original: where G sampled the original token, the
     label is "original".
  5. The two losses                            loss()
     G's MLM cross-entropy at the masked positions + lambda x D's binary
     cross-entropy averaged over all non-padding tokens, lambda = 50.

micro_batch_loss() runs these for one micro-batch and has the shape of
self_evolution.micro_batch_loss, so train.py's loop (--objective electra) calls
either method the same way; detection_counts() and detection_metrics() measure
held-out replaced token detection (the share replaced, D's precision, recall
and F1 on the replaced class against the all-"original" baseline, G's MLM
accuracy). Section 8 is what train.py shows of a run, as probe.py is for SE:
the held-out figures at every evaluation, a sample sentence with G's
replacements and D's verdicts marked, and the report of a run's start and end.

Where this file differs from the authors' code (google-research/electra), and why:
- The number masked is masking.budget's, the project's one rule (fairseq's:
  15% of a sequence's maskable tokens, rounded at random so that the mean is
  exact, positions drawn without replacement); the authors round 15% of all
  its tokens and draw positions with replacement, so a few coincide.
- The optimizer. The authors use Adam without bias correction (eps 1e-6,
  weight decay 0.01 off LayerNorm and biases, clipping at 1.0). This project
  keeps its AdamW (runtime.make_optimizer: the same decoupled weight decay,
  eps, exclusions and clipping) with bias correction. Without it, step t's
  update is (1 - 0.9^t) / sqrt(1 - 0.999^t) times AdamW's: 3.2x at the first
  step, 1.26x at step 1,000, 1.03x at step 3,000, 1.00x from step 5,000. The
  authors' warm-up (10,000 steps) keeps the learning rate below 10% of its
  peak for the first 1,000 steps and below 30% for the first 3,000, where the
  factor is larger than 1.03: the difference is immaterial, and one optimizer
  serves both methods. (Their schedule multiplies the warm-up with a linear
  decay over the whole run, where runtime.lr_at decays after the warm-up; over
  a short warm-up the two differ little.)
- Their generator is sized by a fraction alone; "base" (1/3, where small and
  large take 1/4) is told apart here by D's hidden width 768, BERT-base's and
  ELECTRA-Base's (generator_fraction), unless --generator-size says otherwise.
"""

import math
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import checkpoint
import runtime
from masking import IGNORE_INDEX, random_mask, special_tokens_mask
from model import Discriminator, EncoderConfig, MaskedLM
from self_evolution import MaskingContext, flat_positions
from smoothing import cross_entropy

# -----------------------------------------------------------------------------
# 0. The settings

MASK_SPLIT = (0.85, 0.0, 0.15)  # of the masked tokens: [MASK], a random token (never), kept unchanged
BASE_WIDTH = 768  # D's hidden width that marks a base model: its generator is 1/3 as wide, else 1/4


@dataclass(frozen=True)
class Objective:
    """ELECTRA's settings: train.py's options of this method, under the same names. The defaults are
    the authors' (lambda 50, 15% masked, the generator's fraction by D's size)."""

    electra_lambda: float = 50.0  # the weight of D's loss against G's
    electra_mask_ratio: float = 0.15  # the share of each sequence's non-special tokens masked (large: 0.25)
    generator_size: str | float = "auto"  # G's hidden width as a fraction of D's; "auto": the authors'
    generator: str | None = None  # an ELECTRA generator checkpoint to start G from; None: a fresh G

    def __post_init__(self):
        # the same ranges as the options', for an Objective made in code
        lam, ratio, size = self.electra_lambda, self.electra_mask_ratio, self.generator_size
        if not (math.isfinite(lam) and lam > 0):
            raise ValueError(f"--electra-lambda {lam}: D's loss weight must be a number > 0 "
                             "(the authors' is 50)")
        if not 0 < ratio < 1:
            raise ValueError(f"--electra-mask-ratio {ratio}: the share of tokens masked must be in (0, 1)")
        if size != "auto" and not (isinstance(size, (int, float)) and 0 < size <= 1):
            raise ValueError(f"--generator-size {size}: a fraction of D's width in (0, 1], or 'auto'")

    @staticmethod
    def add_options(group):
        """train.py's options of the method, one per setting, with the defaults above."""
        O, number = Objective, runtime.number
        group.add_argument("--electra-lambda", type=number(float, above=0), default=O.electra_lambda,
                           help="weight of the discriminator's loss against the generator's")
        group.add_argument("--electra-mask-ratio", type=number(float, above=0, below=1),
                           default=O.electra_mask_ratio,
                           help="share of each sequence's non-special tokens masked (the authors': 0.25 "
                                "for large)")
        group.add_argument("--generator-size", type=size_option, default=O.generator_size,
                           help="the generator's hidden width as a fraction of the discriminator's; "
                                f"auto: 1/3 for a base model (hidden {BASE_WIDTH}), else 1/4, as the authors")
        group.add_argument("--generator", metavar="CHECKPOINT", default=O.generator,
                           help="start the generator from an ELECTRA generator checkpoint instead of a "
                                "fresh one")

    @classmethod
    def from_options(cls, args) -> "Objective":
        """The settings of train.py's parsed options; contradicting ones are a ValueError."""
        if args.generator is not None and args.generator_size != "auto":
            raise ValueError(f"--generator-size {args.generator_size} sizes a fresh generator; "
                             f"--generator {args.generator} has its own size")
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def size_option(text):
    """--generator-size: 'auto', or a fraction in (0, 1]."""
    return text if text == "auto" else runtime.number(float, above=0, at_most=1)(text)


# -----------------------------------------------------------------------------
# 1. The two networks: a small generator and the discriminator, one set of embeddings


def generator_fraction(config: EncoderConfig, size="auto") -> float:
    """G's hidden width as a fraction of D's: `size`, or the authors' (1/3 for base, 1/4 for small and
    large). Base is told by D's width, BASE_WIDTH; their small and large are 256 and 1024 wide."""
    if size != "auto":
        return float(size)
    return 1 / 3 if config.hidden_size == BASE_WIDTH else 1 / 4


def generator_config(config: EncoderConfig, size="auto") -> EncoderConfig:
    """The configuration of a fresh generator for the discriminator of `config`: D's layer count, a
    fraction of its width, heads of 64 (at least one), a feed-forward 4x as wide, D's embeddings."""
    hidden = max(1, round(config.hidden_size * generator_fraction(config, size)))
    heads = max(1, hidden // 64)
    hidden -= hidden % heads  # a whole number of dimensions per head
    return EncoderConfig.from_dict({**config.as_electra().to_dict(), "hidden_size": hidden,
                                    "num_attention_heads": heads, "intermediate_size": 4 * hidden,
                                    "architectures": [MaskedLM.architecture["electra"]]})


SHARED = ("vocab_size", "embedding_width", "max_position_embeddings", "type_vocab_size")


def check_pair(discriminator: EncoderConfig, generator: EncoderConfig, where="the generator"):
    """Refuse a generator that cannot share the discriminator's embeddings, naming what differs."""
    if generator.model_type != "electra":
        raise ValueError(f"{where}: a {generator.model_type} model, where the generator must be an ELECTRA "
                         "generator (model_type electra, ElectraForMaskedLM)")
    for name in SHARED:
        mine, theirs = getattr(generator, name), getattr(discriminator, name)
        if mine != theirs:
            what = name.replace("_", " ").replace("width", "size (width)")
            raise ValueError(f"{where}: its {what} is {mine}, the discriminator's {theirs}; "
                             "the two must share one set of embeddings")


class ElectraPretraining(nn.Module):
    """G and D with one set of embeddings: what the training loop trains, saves and resumes.

    G's embedding module IS D's (word, position and token-type embeddings and
    their LayerNorm), and G's output layer is tied to the shared word
    embeddings: one optimizer, one DDP wrapper and one state_dict serve both
    (the shared tensors appear in it under both names, with one value).
    Each model keeps its own projection E -> H where E differs from its width.
    Saved, it is two Hugging Face folders, discriminator/ and generator/,
    each whole (the shared embeddings copied into both, as in converted ELECTRA
    checkpoints); loaded, the two are tied again.
    """

    parts = ("discriminator", "generator")  # the Hugging Face folders of a saved pair

    def __init__(self, discriminator: Discriminator, generator: MaskedLM):
        super().__init__()
        check_pair(discriminator.config, generator.config)
        generator.encoder.embed = discriminator.encoder.embed  # one set of tensors
        if generator.config.tie_word_embeddings:
            generator.decoder.weight = generator.encoder.embed.word.weight
        self.discriminator, self.generator = discriminator, generator
        self.config = discriminator.config  # the model that is kept
        self.train(discriminator.training)  # the pair in its parts' mode: eval, as loaded

    @classmethod
    def build(cls, discriminator, generator=None, size="auto", **overrides) -> "ElectraPretraining":
        """D from any BERT-layout checkpoint (a fresh head if it has none, with a warning) or a
        Discriminator; G from an ELECTRA generator checkpoint, or fresh at `size` of D's width (the
        authors' fraction: generator_fraction). `overrides` (dropout) apply to both."""
        if not isinstance(discriminator, Discriminator):
            discriminator = Discriminator.from_pretrained(discriminator, **overrides)
        if generator is None:
            fresh = generator_config(discriminator.config, size)
            return cls(discriminator, MaskedLM(EncoderConfig.from_dict(fresh.to_dict(), **overrides)).eval())
        config = EncoderConfig.from_json(checkpoint.resolve_checkpoint(generator) / "config.json")
        check_pair(discriminator.config, config, f"--generator {generator}")
        return cls(discriminator, MaskedLM.from_pretrained(generator, **overrides))

    @classmethod
    def for_run(cls, objective, model, start=None, **overrides) -> "ElectraPretraining":
        """What train.py trains: the pair saved in the checkpoint `start` (a resume), else D from
        `model` and G as the objective says (its --generator checkpoint, or fresh at --generator-size).
        A model or generator that cannot make the pair stops the script, in one line that names it."""
        try:
            if start is not None:
                return cls.from_pretrained(start, **overrides)
            return cls.build(model, objective.generator, objective.generator_size, **overrides)
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None

    @classmethod
    def from_pretrained(cls, folder, **overrides) -> "ElectraPretraining":
        """What save_pretrained wrote (a train.py checkpoint): discriminator/ and generator/, tied again.
        Where the generator's copy of the shared embeddings differs, D's are kept, with a warning."""
        folder = Path(folder)
        d = Discriminator.from_pretrained(folder / "discriminator", **overrides)
        g_config = EncoderConfig.from_json(folder / "generator" / "config.json")
        check_pair(d.config, g_config, folder / "generator")
        g = MaskedLM.from_pretrained(folder / "generator", **overrides)
        differ = [name for name, t in d.encoder.embed.state_dict().items()
                  if not torch.equal(t, g.encoder.embed.state_dict()[name])]
        if differ:
            warnings.warn(f"{folder / 'generator'}: its copy of the shared embeddings ({', '.join(differ)}) "
                          "differs from the discriminator's; the discriminator's serve both", stacklevel=2)
        return cls(d, g)

    def save_pretrained(self, out_dir):
        """discriminator/ and generator/, Hugging Face folders (ElectraForPreTraining, ElectraForMaskedLM)."""
        for part in self.parts:
            getattr(self, part).save_pretrained(Path(out_dir) / part)

    def forward(self, input_ids, masked_ids, selected, positions, uniform, attention_mask=None, then=None):
        """Steps 2 to 4 on a masked micro-batch (mask()): G's logits at the masked positions (n, vocab),
        D's input (batch, length) and D's logits there (batch, length). `uniform`, (n, vocab) draws in
        [0, 1), is the noise of the Gumbel-max sampling, drawn before: the forward is a function of its
        inputs (under DDP and torch.compile too). `then`, a function of the pair and those three, runs
        inside this forward and its result comes fourth: MCL's self-correction (mcl.py), a second pass
        that DDP must see as part of the one forward."""
        g_logits = self.generator(masked_ids, attention_mask, positions=positions)  # generate
        sampled = gumbel_max(g_logits.detach(), uniform)  # sample: no gradient into G
        d_input = replace(input_ids, selected, sampled)  # D's input
        out = g_logits, d_input, self.discriminator(d_input, attention_mask)  # detect
        return out if then is None else (*out, then(self, *out))


# -----------------------------------------------------------------------------
# 2. Mask


class Masked(NamedTuple):
    """One micro-batch masked for the generator, and where."""

    input_ids: torch.Tensor  # (batch, length) G's input: [MASK] at 85% of the masked positions
    selected: torch.Tensor  # (batch, length) bool: the masked positions, [MASK] or kept
    positions: torch.Tensor  # (n,) their flat indices, in order, padded to a size fixed in advance
    targets: torch.Tensor  # (n,) their original ids; IGNORE_INDEX in the padding


def mask(objective, tok, input_ids, generator=None) -> Masked:
    """Step 1: mask electra_mask_ratio of each sequence's non-special tokens, chosen uniformly at
    random (masking.random_mask's budget and draw), 85% to [MASK] and 15% kept, none to a random token."""
    maskable = ~special_tokens_mask(input_ids, tok)
    ratio = objective.electra_mask_ratio
    masked_ids, _, selected = random_mask(input_ids, maskable, tok.mask_id, tok.vocab_size, ratio, generator,
                                          split=MASK_SPLIT)
    batch, length = input_ids.shape
    # A size known on the host (the budget's bound, as self_evolution.max_selected): nothing waits
    # for the GPU.
    positions, valid = flat_positions(selected, batch * (int(length * ratio) + 1))
    targets = torch.where(valid, input_ids.flatten()[positions], IGNORE_INDEX)
    return Masked(masked_ids, selected, positions, targets)


# -----------------------------------------------------------------------------
# 3. Sample


def gumbel_max(logits, uniform):
    """Step 3: one token per row drawn from softmax(logits), by the Gumbel-max trick: the argmax of
    logits + g with g = -log(-log u), u uniform in (0, 1), is distributed as the softmax.

    In float32 whatever the logits' dtype: torch's fp16 Gumbel sampling has a
    known bug (pytorch/pytorch#41663), which is why richarddwang/electra_pytorch,
    the reference PyTorch reproduction, samples in float32 too. A u of 0 is
    raised to the smallest float, so no draw is infinite. No gradient: the
    sample is a token id."""
    u = uniform.float().clamp_min(torch.finfo(torch.float32).tiny)
    return (logits.detach().float() - torch.log(-torch.log(u))).argmax(-1)


# -----------------------------------------------------------------------------
# 4. Detect


def replace(input_ids, selected, sampled):
    """Step 4, D's input: the original ids with every selected position overwritten by G's sample.

    `sampled` holds one token per slot of mask()'s positions: the selected
    positions in row-major order first, then padding, which masked_scatter
    never reaches (it takes as many values as positions are selected, in that
    order, and needs no host sync to count them)."""
    return input_ids.masked_scatter(selected, sampled.to(input_ids.dtype))


# -----------------------------------------------------------------------------
# 5. The two losses


def loss(objective, g_logits, targets, d_logits, replaced, real=None):
    """Step 5: G's MLM cross-entropy (a mean over the masked positions) + lambda x D's binary
    cross-entropy (a mean over the real tokens, `real`; None: all), both in float32.

    `replaced` is D's label: True where D's input differs from the original."""
    return cross_entropy(g_logits, targets) + objective.electra_lambda * detection_loss(d_logits, replaced, real)


def detection_loss(d_logits, replaced, real=None):
    """D's binary cross-entropy, a mean over the real tokens (None: all), in float32."""
    per_token = F.binary_cross_entropy_with_logits(d_logits.float(), replaced.float(), reduction="none")
    return per_token.mean() if real is None else (per_token * real).sum() / real.sum().clamp_min(1)


# -----------------------------------------------------------------------------
# 6. One micro-batch, start to end


def micro_batch_loss(objective, model, tok, input_ids, generator, context=MaskingContext(), wrapped=None):
    """One micro-batch of ELECTRA: mask, then one forward (generate, sample, detect) and the two
    losses. Returns the loss and the number of masked tokens (a micro-batch that masks none trains
    the generator on nothing: training says so).

    The signature of self_evolution.micro_batch_loss, so that train.py's loop
    calls either: `model` is the ElectraPretraining, `wrapped` (default:
    `model`) the same behind DDP or torch.compile, which the forward runs
    through. The context is unused: ELECTRA has no separate head phase, its
    heads train with the rest from the first step. Training blocks are packed
    full, so the forward has no attention mask; D's loss still leaves out any
    padding token.
    """
    masked = mask(objective, tok, input_ids, generator)
    vocab = model.generator.config.vocab_size
    uniform = torch.rand((len(masked.positions), vocab), generator=generator, device=input_ids.device,
                         dtype=torch.float32)  # the Gumbel-max noise (step 3), from the one generator
    g_logits, d_input, d_logits = (model if wrapped is None else wrapped)(
        input_ids, masked.input_ids, masked.selected, masked.positions, uniform)
    total = loss(objective, g_logits, masked.targets, d_logits, d_input != input_ids, input_ids != tok.pad_id)
    return total, (masked.targets != IGNORE_INDEX).sum()


# -----------------------------------------------------------------------------
# 7. Held-out replaced token detection


class Detection(NamedTuple):
    """One batch corrupted by G and judged by D, in eval mode: the figures and the sample sentence."""

    masked: Masked
    d_input: torch.Tensor  # (batch, length) D's input: the original with G's samples
    replaced: torch.Tensor  # (batch, length) bool: the truth, where D's input differs from the original
    flagged: torch.Tensor  # (batch, length) bool: D's verdicts, logit > 0
    real: torch.Tensor  # (batch, length) bool: not padding
    generator_correct: torch.Tensor  # (n,) bool: G's most likely token is the original (False in padding)


@torch.no_grad()
def detect(objective, model, tok, input_ids, generator, attention_mask=None) -> Detection:
    """Mask, sample and detect one batch as training does, in eval mode (no dropout), without gradient.
    `generator` fixes the masks and samples (a held-out set is judged alike at every evaluation)."""
    was_training = model.training
    model.eval()
    masked = mask(objective, tok, input_ids, generator)
    uniform = torch.rand((len(masked.positions), model.generator.config.vocab_size), generator=generator,
                         device=input_ids.device, dtype=torch.float32)
    g_logits, d_input, d_logits = model(input_ids, masked.input_ids, masked.selected, masked.positions,
                                        uniform, attention_mask)
    model.train(was_training)
    real = input_ids != tok.pad_id if attention_mask is None else attention_mask.bool()
    correct = (g_logits.argmax(-1) == masked.targets) & (masked.targets != IGNORE_INDEX)
    return Detection(masked, d_input, (d_input != input_ids) & real, (d_logits > 0) & real, real, correct)


COUNTS = ("tokens", "replaced", "flagged", "flagged_replaced", "correct", "masked", "generator_correct")


def detection_counts(detection: Detection) -> torch.Tensor:
    """The counts of one batch, in the order of COUNTS, as one tensor on its device: sum them over
    batches without waiting for the device, then detection_metrics() reads them once."""
    d = detection
    return torch.stack([d.real.sum(), d.replaced.sum(), d.flagged.sum(), (d.flagged & d.replaced).sum(),
                        ((d.flagged == d.replaced) & d.real).sum(), (d.masked.targets != IGNORE_INDEX).sum(),
                        d.generator_correct.sum()])


def detection_metrics(counts) -> dict:
    """Replaced token detection from summed counts: the share of tokens replaced; D's precision,
    recall and F1 on the replaced class and its accuracy; the accuracy of the all-"original"
    baseline (its F1 is 0); G's MLM accuracy at the masked positions."""
    c = dict(zip(COUNTS, (float(x) for x in torch.as_tensor(counts).tolist())))
    precision = c["flagged_replaced"] / c["flagged"] if c["flagged"] else 0.0
    recall = c["flagged_replaced"] / c["replaced"] if c["replaced"] else 0.0
    tokens = max(c["tokens"], 1.0)
    return {"share_replaced": c["replaced"] / tokens, "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "accuracy": c["correct"] / tokens, "baseline_accuracy": 1 - c["replaced"] / tokens,
            "generator_accuracy": c["generator_correct"] / max(c["masked"], 1.0)}


# -----------------------------------------------------------------------------
# 8. What train.py shows of a run: held-out figures, a sample sentence, the report

EVAL_SEED = 1234  # the seed of every fixed held-out mask (probe.EVAL_SEED, SE's)


def heldout_batches(tok, blocks, n, batch_size, device):
    """The first n held-out blocks in batches, each with the seed of its masks and Gumbel noise: [(ids on
    `device`, seed)]. Every evaluation of a run masks the same positions with the same noise, so its
    figures change only as G and D do (G's samples change with G). `tok` is unused: the signature of
    probe.random_masks, SE's fixed held-out set."""
    starts = range(0, min(n, len(blocks)), batch_size)
    return [(blocks.batch(np.arange(i, min(n, len(blocks), i + batch_size))).to(device), EVAL_SEED + i)
            for i in starts]


def evaluate(objective, model, tok, batches, autocast) -> dict:
    """Held-out replaced token detection on heldout_batches(): detection_metrics() of the summed counts,
    D's as "rtd_*" and G's MLM accuracy as "generator_accuracy" (the keys of log.jsonl)."""
    counts = 0
    for ids, seed in batches:
        with autocast:
            counts = counts + detection_counts(detect(objective, model, tok, ids,
                                                      torch.Generator(ids.device).manual_seed(seed)))
    metrics = detection_metrics(counts)
    return {k if k == "generator_accuracy" else f"rtd_{k}": v for k, v in metrics.items()}


def evaluation_text(result) -> str:
    """One evaluation in one line, as train.py prints it above the progress bar."""
    r = result
    return (f"held-out replaced tokens {r['rtd_share_replaced']:.1%}: D's precision {r['rtd_precision']:.3f},"
            f" recall {r['rtd_recall']:.3f}, F1 {r['rtd_f1']:.3f} | G's MLM accuracy "
            f"{r['generator_accuracy']:.3f}")


def show_sample(objective, model, tok, text, device) -> str:
    """One sentence as a training step sees it: masked (with a fixed seed, so that a run's start and end
    mask the same positions), filled by G's samples and judged by D. A replaced token is shown as
    [sample<-original], a masked one where G drew the original as (token), and a * follows every token
    D calls replaced."""
    ids = tok(text)["input_ids"].to(device)
    d = detect(objective, model, tok, ids, torch.Generator(device).manual_seed(EVAL_SEED))
    shown = []  # a display of one sentence: a loop over its tokens is no hot path
    for original, sample, masked, replaced, flagged in zip(
            tok.tokens(ids[0]), tok.tokens(d.d_input[0]), *(t[0].tolist() for t in
                                                            (d.masked.selected, d.replaced, d.flagged))):
        word = f"[{sample}<-{original}]" if replaced else f"({original})" if masked else original
        shown.append(word + ("*" if flagged else ""))
    n_replaced, hits = int(d.replaced.sum()), int((d.flagged & d.replaced).sum())
    return (" ".join(shown) + f"\n  D flags {hits} of the {n_replaced} replaced tokens and "
            f"{int(d.flagged.sum()) - hits} of the {int(d.real.sum()) - n_replaced} others")


def show_samples(objective, model, tok, samples, device, when) -> str:
    """show_sample() of each sentence (`samples`: a sentence or a list of them), under a line that says
    when and how to read them."""
    samples = [samples] if isinstance(samples, str) else samples
    lines = [f"{when}: G's samples at masked positions, [sample<-original] where replaced, (token) where G "
             "drew the original; * where D says replaced"]
    return "\n".join(lines + [show_sample(objective, model, tok, text, device) for text in samples])


def method_start(objective, model, tok, heldout, machine, out, *, n, batch_size, name, samples,
                 token_counts=None):
    """What train.py shows as ELECTRA begins, in the shape of probe.method_start (SE's): the sample
    sentences as G corrupts them and D judges them. Returns None: ELECTRA fixes no hardest tokens (SE's
    held-out set); its fixed held-out set is heldout_batches(). Process 0 alone calls it."""
    print(show_samples(objective, model, tok, samples, machine.device, "the start"))


def method_end(objective, model, tok, machine, *, step, samples, token_counts=None) -> str:
    """What train.py shows after the last step, in the shape of probe.method_end: the same sentences,
    masked at the same positions, as the trained G and D see them. Returns the text it printed."""
    text = show_samples(objective, model, tok, samples, machine.device, f"step {step}")
    print(text)
    return text


def report(evaluations) -> list:
    """The held-out figures of a run's start and end (log.jsonl's entries of those evaluations), as
    train.py's report prints them: the share replaced, D against the all-"original" baseline, G."""
    if not evaluations:
        return []
    rows = (("share of tokens G replaced", "rtd_share_replaced"),
            ("D's precision on the replaced class", "rtd_precision"),
            ("D's recall on the replaced class", "rtd_recall"),
            ("D's F1 on the replaced class (the all-\"original\" baseline's: 0)", "rtd_f1"),
            ("D's accuracy over all tokens", "rtd_accuracy"),
            ("the all-\"original\" baseline's accuracy", "rtd_baseline_accuracy"),
            ("G's MLM accuracy at the masked positions", "generator_accuracy"))
    when = " -> ".join(f"{e['phase']}, step {e['step']}" for e in evaluations)
    return [f"held-out replaced-token detection ({when}):"] + [
        f"  {what}: " + " -> ".join(f"{e[key]:.3f}" for e in evaluations) for what, key in rows]
