"""
mcl.py -- MCL's courses on ELECTRA's step: swapped and inserted tokens, the correction notebook, soups.

Beiduo Chen et al., "Pre-training Language Model as a Multi-perspective Course
Learner" (Findings of ACL 2023, arXiv 2305.03981).
ELECTRA (electra.py) has two flaws, the paper says: its generator G, trained
by MLM alone, gives the discriminator D imbalanced labels (only some 6-15% of
the tokens are "replaced"), and nothing flows back from D to G. MCL adds
courses: more ways to corrupt a sequence, so that D sees more positives and
other kinds of them, and a "correction notebook" that feeds D's mistakes back.

What the paper states is its abstract and its model card; its body (each
course's definition, the loss weights, the soups' procedure) could not be
read, and no code was released. Everything below that the abstract and card
do not state is this project's reconstruction; each section says which is which.

  1. The settings                            Courses: one option per course, 0 = off
  2. STD, swapped token detection            swap()
  3. ITD, inserted token detection           insert(), shift()
  4. The courses of one micro-batch          corrupt(), course_of()
  5. The correction notebook                 notebook(), correction()
  6. One micro-batch, start to end           micro_batch_loss()
  7. Held-out detection, course by course    evaluate(), show_samples(), report()
  8. Course soups                            average(), greedy_soup()

Mix per step, or courses in turn? The abstract says the three courses
"balance the label in a multi-perspective way" and that they pull against each
other ("tug-of-war"), which the soups answer. Balance is a property of what D
reads at each step, and a tug-of-war needs the courses trained together: so
this project mixes them in every sequence of every step (RTD's masks, then
swaps among the tokens RTD left, then insertions that shift the whole
sequence), rather than taking them in turn. With every course off, a step is
electra.micro_batch_loss's exactly, random numbers included (tested).
"""

import math
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F

import electra
import runtime
from masking import IGNORE_INDEX, budget, random_mask, random_select, special_tokens_mask
from self_evolution import MaskingContext, flat_positions
from smoothing import cross_entropy

# -----------------------------------------------------------------------------
# 1. The settings

ORIGINAL, REPLACED, SWAPPED, INSERTED = 0, 1, 2, 3  # what made a position positive (0: nothing)
COURSES = {REPLACED: "rtd", SWAPPED: "std", INSERTED: "itd"}


@dataclass(frozen=True)
class Courses(electra.Objective):
    """ELECTRA's settings and MCL's courses, each 0 (off) by default: train.py's options, same names.

    Stated by the paper: the three courses (RTD, STD, ITD), that RTD masks 15%
    of the tokens, the two self-correction courses and their notebook. Chosen
    here: the shares of STD and ITD, the notebook's size and the weights
    (the paper's could not be read; 0.15 each makes every course as frequent as
    RTD, the measurement's mix in results/mcl)."""

    std_ratio: float = 0.0  # share of each sequence's non-special tokens that change places (STD)
    itd_ratio: float = 0.0  # share inserted (ITD), as many as the sequence loses at its end
    correct_generator: float = 0.0  # weight of G's loss on the notebook (self-correction, G's course)
    correct_discriminator: float = 0.0  # weight of D's second pass, x lambda (self-correction, D's course)
    notebook_size: float = 0.15  # at most this share of each sequence's tokens enter the notebook

    def __post_init__(self):
        super().__post_init__()
        shares = (self.electra_mask_ratio, self.std_ratio, self.itd_ratio)
        if not all(math.isfinite(s) and 0 <= s < 1 for s in shares[1:]) or sum(shares) >= 1:
            raise ValueError(f"--std-ratio {self.std_ratio}, --itd-ratio {self.itd_ratio}: shares in [0, 1) "
                             f"that, with --electra-mask-ratio {self.electra_mask_ratio}, sum to less than 1")
        for name in ("correct_generator", "correct_discriminator"):
            if not (math.isfinite(w := getattr(self, name)) and w >= 0):
                raise ValueError(f"--{name.replace('_', '-')} {w}: a weight >= 0 (0: the course is off)")
        if not 0 < self.notebook_size <= 1:
            raise ValueError(f"--notebook-size {self.notebook_size}: a share of each sequence in (0, 1]")

    @staticmethod
    def add_options(group):
        """train.py's options of the courses (ELECTRA's own: electra.Objective.add_options)."""
        C, number = Courses, runtime.number
        share, weight = number(float, at_least=0, below=1), number(float, at_least=0)
        group.add_argument("--std-ratio", type=share, default=C.std_ratio,
                           help="swapped token detection: share of each sequence's tokens that change places "
                                "in pairs (0: off)")
        group.add_argument("--itd-ratio", type=share, default=C.itd_ratio,
                           help="inserted token detection: share of tokens inserted, filled by the generator "
                                "(0: off)")
        group.add_argument("--correct-generator", type=weight, default=C.correct_generator,
                           help="self-correction: weight of the generator's MLM loss on the tokens the "
                                "discriminator got wrong, re-masked (0: off)")
        group.add_argument("--correct-discriminator", type=weight, default=C.correct_discriminator,
                           help="self-correction: weight (x --electra-lambda) of a second discriminator pass "
                                "on the sequence the generator re-generated at those tokens (0: off)")
        group.add_argument("--notebook-size", type=number(float, above=0, at_most=1), default=C.notebook_size,
                           help="the correction notebook holds at most this share of each sequence's tokens, "
                                "the discriminator's most confident mistakes first")

    @property
    def plain(self) -> bool:
        """ELECTRA alone: no course beyond RTD, no self-correction."""
        return not (self.std_ratio or self.itd_ratio or self.correcting)

    @property
    def correcting(self) -> bool:
        return bool(self.correct_generator or self.correct_discriminator)

    @property
    def active(self) -> dict:
        """{course id: name} of the detection courses on: RTD always, STD and ITD where their share is > 0."""
        return {c: name for c, name in COURSES.items()
                if c == REPLACED or getattr(self, f"{name}_ratio") > 0}


# -----------------------------------------------------------------------------
# 2. STD, swapped token detection


def swap(input_ids, free, k, generator=None):
    """STD's corruption: k[b] of row b's `free` positions, drawn uniformly, change places in pairs.

    Stated: the course is "swapped token detection". Chosen here: pairs of
    positions anywhere in the sequence (the first two drawn swap, then the next
    two, ...), k rounded down to an even number and capped by the free count.
    Returns (the swapped ids, source): source[b, j] is the position whose token
    now sits at j (j itself where nothing moved), so that any other tensor of
    the row can be moved alike (tensor.gather(-1, source)). D's label is
    "swapped" where a position's token differs from its original: a token
    swapped with an equal one is "original", as a sample equal to the original
    is in RTD.
    """
    length = input_ids.shape[-1]
    k = torch.minimum(k, free.sum(-1))
    k = k - k % 2
    keys = torch.rand(free.shape, generator=generator, device=free.device).masked_fill(~free, -1.0)
    order = keys.argsort(dim=-1, descending=True, stable=True)  # order[r]: the position drawn r-th
    ranks = torch.arange(length, device=free.device).expand_as(order)
    partner = order.gather(-1, (ranks ^ 1).clamp(max=length - 1))  # the r-th's partner: the (r xor 1)-th
    source = ranks.scatter(-1, order, torch.where(ranks < k.unsqueeze(-1), partner, order))
    return input_ids.gather(-1, source), source


# -----------------------------------------------------------------------------
# 3. ITD, inserted token detection


def insert(maskable, k, generator=None):
    """ITD's corruption: k[b] new slots in row b, at positions drawn uniformly among the maskable ones.

    Stated: the course is "inserted token detection". Chosen here: the slots
    are drawn as output positions, each takes a token sampled by G (as RTD's
    masks do), and the text from the first maskable position to the last moves
    right to make room: the token at j comes from j - (the number of slots at
    or before j), and the last k[b] tokens of that span fall off, so the
    sequence keeps its length. [CLS], the final [SEP] and padding stay where
    they are; a [SEP] between two documents moves with the text. D's labels:
    "inserted" at every slot (even where G's token equals a neighbour, which
    makes the same sequence as a slot beside it: the slot is where it was put);
    every other position holds an original token, shifted, and is "original"
    unless another course changed it.

    Returns (source, inserted): where each position's token comes from
    (shift() applies it), and the slots.
    """
    inserted = random_select(maskable, k, generator)
    positions = torch.arange(maskable.shape[-1], device=maskable.device).expand_as(maskable)
    first = torch.where(maskable, positions, maskable.shape[-1]).amin(-1, keepdim=True)
    last = torch.where(maskable, positions, -1).amax(-1, keepdim=True)
    span = (positions >= first) & (positions <= last)
    source = torch.where(span, positions - inserted.long().cumsum(-1), positions)
    return source.masked_fill(inserted, 0), inserted


def shift(tensor, source, inserted, fill):
    """A row-wise tensor moved as insert() says, `fill` at the inserted slots."""
    return tensor.gather(-1, source).masked_fill(inserted, fill)


# -----------------------------------------------------------------------------
# 4. The courses of one micro-batch


class Corrupted(NamedTuple):
    """One micro-batch through every course on: G's input, D's input before G's samples, the truth."""

    masked: electra.Masked  # G's input; selected: RTD's masks and ITD's slots, which G fills; RTD's targets
    d_base: torch.Tensor  # (batch, length) D's input before G's samples: swapped, shifted
    reference: torch.Tensor  # (batch, length) the original ids, shifted as the insertions moved them
    inserted: torch.Tensor  # (batch, length) bool: ITD's slots
    corruptible: torch.Tensor  # (batch, length) bool: positions a course may change (no special token)


def corrupt(courses, tok, input_ids, generator=None) -> Corrupted:
    """RTD, then STD, then ITD, each on what the one before left (section 0's order).

    1. RTD, ELECTRA's: electra_mask_ratio of the non-special tokens, 85% to
       [MASK], 15% kept, drawn first, as electra.mask draws them.
    2. STD: std_ratio of the non-special tokens (the same base) swap in pairs,
       among those RTD did not take; G's input carries the same swaps, so G
       predicts its masks in the context D will read. G learns nothing new in
       this course: it is D's.
    3. ITD: itd_ratio of them as inserted slots, [MASK] in G's input, which G
       fills like RTD's masks; everything else shifts (insert()).

    G's targets are RTD's positions alone: a slot has no original token."""
    maskable = ~special_tokens_mask(input_ids, tok)
    batch, length = input_ids.shape
    masked_ids, _, selected = random_mask(input_ids, maskable, tok.mask_id, tok.vocab_size,
                                          courses.electra_mask_ratio, generator, split=electra.MASK_SPLIT)
    d_base, reference, inserted = input_ids, input_ids, torch.zeros_like(selected)
    if courses.std_ratio:
        _, source = swap(input_ids, maskable & ~selected, budget(maskable, courses.std_ratio, generator),
                         generator)
        d_base, masked_ids = d_base.gather(-1, source), masked_ids.gather(-1, source)
    bound = int(length * courses.electra_mask_ratio) + 1  # the budgets' bound (electra.mask), per row
    if courses.itd_ratio:
        source, inserted = insert(maskable, budget(maskable, courses.itd_ratio, generator), generator)
        d_base, masked_ids, reference = (shift(t, source, inserted, tok.mask_id)
                                         for t in (d_base, masked_ids, reference))
        selected = shift(selected, source, inserted, True)
        maskable = shift(maskable, source, inserted, True)
        bound += int(length * courses.itd_ratio) + 1
    positions, valid = flat_positions(selected, batch * bound)
    target = valid & ~inserted.flatten()[positions]
    targets = torch.where(target, reference.flatten()[positions], IGNORE_INDEX)
    return Corrupted(electra.Masked(masked_ids, selected, positions, targets), d_base, reference, inserted,
                     maskable)


def course_of(corrupted, d_input) -> torch.Tensor:
    """(batch, length) which course made each position of D's input positive: INSERTED at ITD's slots,
    else ORIGINAL where the token is the original (shifted), else REPLACED where G filled it, else SWAPPED.
    D's label is course_of(...) > 0."""
    c = corrupted
    changed = torch.where(c.masked.selected, REPLACED, SWAPPED)
    return torch.where(c.inserted, INSERTED, torch.where(d_input == c.reference, ORIGINAL, changed))


# -----------------------------------------------------------------------------
# 5. The correction notebook


def notebook(d_logits, positive, corruptible, size):
    """The correction notebook: per sequence, the positions D got wrong (a positive it missed, an
    original it flagged) among those a course may change, its most confident mistakes first (the
    largest binary cross-entropy), at most int(length * size) of them (at least one).

    Stated: the notebook holds D's findings, for "secondary supervision".
    Chosen here: which mistakes and how many, so that its size is fixed in
    advance (no host sync). Returns (positions, valid): flat indices, (batch *
    k,), and which slots hold a mistake."""
    batch, length = d_logits.shape
    d_logits = d_logits.detach().float()
    wrong = ((d_logits > 0) != positive) & corruptible
    confidence = F.binary_cross_entropy_with_logits(d_logits, positive.float(), reduction="none")
    top = confidence.masked_fill(~wrong, -1.0).topk(max(1, int(length * size)), dim=-1)
    rows = torch.arange(batch, device=d_logits.device).unsqueeze(-1) * length
    return (top.indices + rows).flatten(), (top.values >= 0).flatten()


def correction(courses, mask_id, corrupted, uniform, model, g_logits, d_input, d_logits, attention_mask=None):
    """The two self-correction courses, after D's verdicts (run inside the pair's forward, `then`).

    Stated: the notebook of D's findings goes back to the generator ("the
    discriminator's findings are fed back"), in two courses. Chosen here:
    - G's course (correct_generator): the notebook's positions are masked in
      D's input, and G learns to predict the original token there: where its
      sample fooled D, and where D doubted an original token. A slot of ITD has
      no original: G is not trained on it.
    - D's course (correct_discriminator): G's samples at those positions
      (Gumbel-max, `uniform`) make a second input, which D judges again with
      labels as in the first pass: D reads its own mistakes, re-generated.
    One G pass serves both (with no gradient when only D's course is on).
    Returns G's logits and targets at the notebook, and D's logits and labels
    of the second pass (None, None without D's course)."""
    c = corrupted
    positive = course_of(c, d_input) > ORIGINAL
    positions, valid = notebook(d_logits, positive, c.corruptible, courses.notebook_size)
    flat = d_input.flatten()
    g_input = flat.scatter(0, positions, torch.where(valid, mask_id, flat[positions])).view_as(d_input)
    with torch.set_grad_enabled(torch.is_grad_enabled() and courses.correct_generator > 0):
        g_notebook = model.generator(g_input, attention_mask, positions=positions)
    targets = torch.where(valid & ~c.inserted.flatten()[positions], c.reference.flatten()[positions],
                          IGNORE_INDEX)
    if not courses.correct_discriminator:
        return g_notebook, targets, None, None
    sampled = electra.gumbel_max(g_notebook, uniform)
    again = flat.scatter(0, positions, torch.where(valid, sampled, flat[positions])).view_as(d_input)
    return g_notebook, targets, model.discriminator(again, attention_mask), c.inserted | (again != c.reference)


def notebook_length(courses, shape) -> int:
    """The notebook's fixed number of slots for a micro-batch of `shape`: batch x notebook()'s k."""
    batch, length = shape
    return batch * max(1, int(length * courses.notebook_size))


# -----------------------------------------------------------------------------
# 6. One micro-batch, start to end


def micro_batch_loss(courses, model, tok, input_ids, generator, context=MaskingContext(), wrapped=None):
    """One micro-batch of ELECTRA with MCL's courses: corrupt, then one forward (G fills, D detects,
    the self-correction inside it) and the losses:

        G's MLM loss + lambda x D's loss on every real token
        + correct_generator x G's loss on the notebook
        + correct_discriminator x lambda x D's loss on the second pass

    The signature of electra.micro_batch_loss (train.py calls either alike), the same result with
    every course off. Returns the loss and the number of RTD's masked tokens."""
    c = corrupt(courses, tok, input_ids, generator)
    vocab, device = model.generator.config.vocab_size, input_ids.device
    uniform = torch.rand((len(c.masked.positions), vocab), generator=generator, device=device)
    then = None
    if courses.correcting:  # the notebook's noise, drawn here: the forward stays a function of its inputs
        again = torch.rand((notebook_length(courses, input_ids.shape), vocab), generator=generator,
                           device=device) if courses.correct_discriminator else None
        then = partial(correction, courses, tok.mask_id, c, again)
    out = (model if wrapped is None else wrapped)(c.d_base, c.masked.input_ids, c.masked.selected,
                                                   c.masked.positions, uniform, then=then)
    g_logits, d_input, d_logits = out[:3]
    real = input_ids != tok.pad_id
    total = electra.loss(courses, g_logits, c.masked.targets, d_logits, course_of(c, d_input) > 0, real)
    if then is not None:
        g_notebook, targets, d_again, positive_again = out[3]
        if courses.correct_generator:
            total = total + courses.correct_generator * cross_entropy(g_notebook, targets)
        if courses.correct_discriminator:
            total = total + courses.correct_discriminator * courses.electra_lambda * electra.detection_loss(
                d_again, positive_again, real)
    return total, (c.masked.targets != IGNORE_INDEX).sum()


# -----------------------------------------------------------------------------
# 7. Held-out detection, course by course


@torch.no_grad()
def detect(courses, model, tok, input_ids, generator):
    """One batch through the courses and D, as training sees it, in eval mode, without gradient:
    (Corrupted, D's input, the course of each position, D's verdicts, real tokens, G's correct masks)."""
    was_training = model.training
    model.eval()
    c = corrupt(courses, tok, input_ids, generator)
    uniform = torch.rand((len(c.masked.positions), model.generator.config.vocab_size), generator=generator,
                         device=input_ids.device)
    g_logits, d_input, d_logits = model(c.d_base, c.masked.input_ids, c.masked.selected, c.masked.positions,
                                        uniform)
    model.train(was_training)
    real = input_ids != tok.pad_id
    correct = (g_logits.argmax(-1) == c.masked.targets) & (c.masked.targets != IGNORE_INDEX)
    return c, d_input, course_of(c, d_input).masked_fill(~real, ORIGINAL), (d_logits > 0) & real, real, correct


def detection_counts(courses, model, tok, input_ids, generator) -> torch.Tensor:
    """One batch's counts, on its device: tokens, originals, originals flagged, RTD's masked tokens, G's
    correct ones, then for each course (RTD, STD, ITD) its positives and those D flagged."""
    c, _, course, flagged, real, correct = detect(courses, model, tok, input_ids, generator)
    original = (course == ORIGINAL) & real
    counts = [real.sum(), original.sum(), (flagged & original).sum(),
              (c.masked.targets != IGNORE_INDEX).sum(), correct.sum()]
    for k in COURSES:
        counts += [(course == k).sum(), (flagged & (course == k)).sum()]
    return torch.stack(counts)


def f1(precision, recall) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def detection_metrics(courses, counts) -> dict:
    """From summed counts: over all positives, D's precision, recall and F1, and the share positive (the
    label balance); per course on, the share of its positives, D's recall on them, and its precision
    and F1 as if the course's positives and the originals were all there were (another course's
    positives left out); D's accuracy against the all-"original" baseline's; G's MLM accuracy."""
    tokens, original, false, masked, g_correct, *per_course = (float(x) for x in counts.tolist())
    tokens = max(tokens, 1.0)
    result, positives, hits = {}, 0.0, 0.0
    for (k, name), (n, hit) in zip(COURSES.items(), zip(per_course[::2], per_course[1::2])):
        positives, hits = positives + n, hits + hit
        if k in courses.active:
            precision, recall = hit / (hit + false) if hit + false else 0.0, hit / n if n else 0.0
            result.update({f"{name}_share": n / tokens, f"{name}_precision": precision,
                           f"{name}_recall": recall, f"{name}_f1": f1(precision, recall)})
    precision, recall = hits / (hits + false) if hits + false else 0.0, hits / positives if positives else 0.0
    return {"positive_share": positives / tokens, "precision": precision, "recall": recall,
            "f1": f1(precision, recall), "accuracy": (hits + original - false) / tokens,
            "baseline_accuracy": original / tokens, **result,
            "generator_accuracy": g_correct / max(masked, 1.0)}


def evaluate(courses, model, tok, batches, autocast) -> dict:
    """Held-out detection on electra.heldout_batches(): ELECTRA's figures (electra.evaluate) for a run
    without courses, else detection_metrics() of the summed counts (the keys of log.jsonl)."""
    if courses.plain:
        return electra.evaluate(courses, model, tok, batches, autocast)
    counts = 0
    for ids, seed in batches:
        with autocast:
            counts = counts + detection_counts(courses, model, tok, ids,
                                               torch.Generator(ids.device).manual_seed(seed))
    return detection_metrics(courses, counts)


def evaluation_text(result) -> str:
    """One evaluation in one line, as train.py prints it above the progress bar."""
    if "positive_share" not in result:
        return electra.evaluation_text(result)
    r, names = result, [name for name in COURSES.values() if f"{name}_f1" in result]
    per_course = ", ".join(f"{n.upper()} {r[f'{n}_share']:.1%} F1 {r[f'{n}_f1']:.3f}" for n in names)
    return (f"held-out positives {r['positive_share']:.1%}: D's F1 {r['f1']:.3f} ({per_course}) | "
            f"G's MLM accuracy {r['generator_accuracy']:.3f}")


def show_sample(courses, model, tok, text, device) -> str:
    """One sentence through the courses (with a fixed seed: a run's start and end corrupt it alike) and D:
    [sample<-original] where G replaced a token, (token) where G drew the original, <token> where a swap
    put it, [+token] where ITD inserted it; a * follows every token D calls corrupted."""
    ids = tok(text)["input_ids"].to(device)
    c, d_input, course, flagged, _, _ = detect(courses, model, tok, ids,
                                               torch.Generator(device).manual_seed(electra.EVAL_SEED))
    shown = []  # a display of one sentence: a loop over its tokens is no hot path
    for now, original, k, masked, flag in zip(tok.tokens(d_input[0]), tok.tokens(c.reference[0]),
                                              course[0].tolist(), c.masked.selected[0].tolist(),
                                              flagged[0].tolist()):
        word = {REPLACED: f"[{now}<-{original}]", SWAPPED: f"<{now}>", INSERTED: f"[+{now}]"}.get(
            k, f"({now})" if masked else now)
        shown.append(word + ("*" if flag else ""))
    positive = course[0] > ORIGINAL
    n, hits = int(positive.sum()), int((flagged[0] & positive).sum())
    return (" ".join(shown) + f"\n  D flags {hits} of the {n} corrupted tokens and "
            f"{int(flagged[0].sum()) - hits} of the {len(shown) - n} others")


def show_samples(courses, model, tok, samples, device, when) -> str:
    """show_sample() of each sentence, under a line that says when and how to read them; ELECTRA's own
    (electra.show_samples) for a run without courses."""
    if courses.plain:
        return electra.show_samples(courses, model, tok, samples, device, when)
    samples = [samples] if isinstance(samples, str) else samples
    head = (f"{when}: the courses' corruption, [sample<-original] where G replaced, (token) where G drew the "
            "original, <token> where swapped, [+token] where inserted; * where D says corrupted")
    return "\n".join([head] + [show_sample(courses, model, tok, text, device) for text in samples])


def method_start(courses, model, tok, heldout, machine, out, *, n, batch_size, name, samples,
                 token_counts=None):
    """What train.py shows as the method begins (electra.method_start's shape): the sample sentences."""
    print(show_samples(courses, model, tok, samples, machine.device, "the start"))


def method_end(courses, model, tok, machine, *, step, samples, token_counts=None) -> str:
    """The same sentences, corrupted alike, as the trained G and D see them. Returns the text printed."""
    text = show_samples(courses, model, tok, samples, machine.device, f"step {step}")
    print(text)
    return text


def report(evaluations) -> list:
    """The held-out figures of a run's start and end, as train.py's report prints them."""
    if not evaluations or "positive_share" not in evaluations[0]:
        return electra.report(evaluations)
    names = [name for name in COURSES.values() if f"{name}_f1" in evaluations[0]]
    rows = [("share of positive labels (the label balance)", "positive_share"),
            ("D's F1 over all positives (the all-\"original\" baseline's: 0)", "f1")]
    for name in names:
        rows += [(f"{name.upper()}: share of positives", f"{name}_share"),
                 (f"{name.upper()}: D's recall / F1", f"{name}_recall", f"{name}_f1")]
    rows += [("D's accuracy over all tokens", "accuracy"),
             ("the all-\"original\" baseline's", "baseline_accuracy"),
             ("G's MLM accuracy at RTD's masks", "generator_accuracy")]
    when = " -> ".join(f"{e['phase']}, step {e['step']}" for e in evaluations)
    return [f"held-out detection, courses {' '.join(n.upper() for n in names)} ({when}):"] + [
        f"  {what}: " + " -> ".join(" / ".join(f"{e[k]:.3f}" for k in keys) for e in evaluations)
        for what, *keys in rows]


# -----------------------------------------------------------------------------
# 8. Course soups


def average(states, names) -> dict:
    """The uniform soup: every tensor the mean of the models' (in float64, then the first's dtype).

    Stated: course soups average models trained with different courses.
    Chosen here: the models must come from one start with one architecture,
    so every tensor has one shape; a model that lacks a tensor or holds it in
    another shape (another head, another generator) is refused, naming the
    tensor and the two models. `names` name the models in those messages."""
    if len(names) != len(states):
        raise ValueError(f"{len(states)} models and {len(names)} names: name each model once")
    first, *rest = states
    for state, name in zip(rest, names[1:]):
        if missing := sorted(first.keys() ^ state.keys()):
            raise ValueError(f"{name}: its tensors differ from {names[0]}'s: {missing[0]} is in one only "
                             f"({len(missing)} such); only models of one architecture can be averaged")
        for key, tensor in first.items():
            if state[key].shape != tensor.shape:
                raise ValueError(f"{name}: {key} has shape {tuple(state[key].shape)}, {names[0]}'s "
                                 f"{tuple(tensor.shape)}; only models of one architecture can be averaged")
    return {key: (sum(s[key].double() for s in states) / len(states)).to(tensor.dtype)
            for key, tensor in first.items()}


def greedy_soup(states, names, score):
    """The greedy soup (Wortsman et al. 2022, "Model soups", recipe 1): the models in order of their own
    dev score, best first; each joins the soup only if the soup's score does not drop. `score` maps a
    state dict to a number, higher better. Returns (the soup's state, the names kept, the log: each
    model's own score, and the soup's after each try)."""
    own = [score(state) for state in states]
    order = sorted(range(len(states)), key=lambda i: -own[i])
    kept, best = [order[0]], own[order[0]]
    log = [{"model": names[i], "score": own[i]} for i in order]
    log[0]["soup"], log[0]["kept"] = best, True
    for entry, i in zip(log[1:], order[1:]):
        trial = score(average([states[j] for j in kept + [i]], [names[j] for j in kept + [i]]))
        entry["soup"], entry["kept"] = trial, trial >= best
        if trial >= best:
            kept, best = kept + [i], trial
    return average([states[j] for j in kept], [names[j] for j in kept]), [names[j] for j in kept], log
