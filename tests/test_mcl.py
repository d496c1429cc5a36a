"""MCL's courses on ELECTRA (mcl.py), each against a hand computation on a hand-made example: STD's swaps,
ITD's insertions and shift, the courses of one micro-batch and their labels, the correction notebook and
the two self-correction courses, the loss of one micro-batch, held-out detection per course, the course
soups; then train.py with the courses on (a run, exact resume, two processes, bf16, the preset, the
options refused at parse time)."""

import math

import pytest
import torch
import torch.nn.functional as F

import electra
import mcl
import train
from checkpoint import latest_checkpoint
from masking import IGNORE_INDEX, budget, special_tokens_mask
from test_electra import NO_DROPOUT, TOK, blocks, gen, pair
from test_electra_train import argv, resumed_equals_uninterrupted, two_processes_equal_one

MASK = TOK.mask_id
COURSES = mcl.Courses(std_ratio=0.15, itd_ratio=0.15)
# The tiny BERT has no discriminator head: every run starts one, and says so (tested in test_electra.py).
pytestmark = pytest.mark.filterwarnings("ignore:.*the checkpoint has no discriminator head")
MCL_OPTIONS = ["--std-ratio", "0.15", "--itd-ratio", "0.15", "--correct-generator", "1",
               "--correct-discriminator", "1"]


def maskable_of(ids):
    return ~special_tokens_mask(ids, TOK)


def origins(maskable_row, slots_row):
    """By hand, insert()'s rule for one row: the input position each output position's token comes from
    (None at a slot). Inside the span (first to last maskable position) the token at j comes from
    j - (slots at or before j); outside it nothing moves."""
    maskable_row, slots_row = maskable_row.tolist(), slots_row.tolist()
    where = [j for j, m in enumerate(maskable_row) if m]
    first, last = (where[0], where[-1]) if where else (len(maskable_row), -1)
    out, seen = [], 0
    for j, slot in enumerate(slots_row):
        seen += slot
        out.append(None if slot else j - seen if first <= j <= last else j)
    return out


# -- 1. STD: swap() ----------------------------------------------------------------------------------


def test_swap_moves_k_free_positions_in_pairs_as_drawn():
    """Two hand-made rows, 8 words between [CLS] and [SEP]; row 0 may not touch positions 3 and 6. For
    each k, the pairs are redone by hand from the same keys: the free positions by key, highest first, the
    first two swap, then the next two; k is rounded down to even and capped by the free count."""
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 15, 16, 17, 3],
                        [2, 20, 21, 22, 23, 24, 25, 26, 27, 3]])
    free = ids > 4
    free[0, 3] = free[0, 6] = False  # 6 free in row 0, 8 in row 1
    for k0, k1, moved in ((0, 0, (0, 0)), (1, 3, (0, 2)), (5, 8, (4, 8)), (9, 7, (6, 6)), (6, 20, (6, 8))):
        for seed in range(3):
            swapped, source = mcl.swap(ids, free, torch.tensor([k0, k1]), gen(seed))
            keys = torch.rand(ids.shape, generator=gen(seed))  # swap's one draw
            for b, want in enumerate(moved):
                drawn = sorted((j for j in range(10) if free[b, j]), key=lambda j: -float(keys[b, j]))[:want]
                expected = list(range(10))
                for x, y in zip(drawn[::2], drawn[1::2]):
                    expected[x], expected[y] = y, x
                assert source[b].tolist() == expected, (k0, k1, seed)
                row = source[b]
                assert int((row != torch.arange(10)).sum()) == want
                assert torch.equal(row[row], torch.arange(10))  # an involution: pairs
                assert not (row != torch.arange(10))[~free[b]].any()  # only free positions move
                assert sorted(swapped[b].tolist()) == sorted(ids[b].tolist())  # a permutation of the row
                assert torch.equal(swapped[b], ids[b][row])


def test_swap_of_equal_tokens_leaves_the_row_unchanged_there():
    """Every free token is 7 except one 9: a pair of 7s moves (source) and changes nothing in the row."""
    ids = torch.tensor([[2, 7, 7, 7, 9, 7, 7, 3]])
    free = ids > 4
    swapped, source = mcl.swap(ids, free, torch.tensor([6]), gen(1))
    moved = source[0] != torch.arange(8)
    assert int(moved.sum()) == 6
    changed = swapped[0] != ids[0]
    # the 9 and its partner change; every other moved position swapped a 7 for a 7
    assert int(changed.sum()) == (2 if moved[4] else 0)
    assert torch.equal(changed, moved & ((ids[0] == 9) | (ids[0][source[0]] == 9)))
    nothing, source = mcl.swap(ids, free, torch.tensor([0]), gen(1))
    assert torch.equal(nothing, ids) and torch.equal(source[0], torch.arange(8))


# -- 2. ITD: insert() and shift() --------------------------------------------------------------------


def test_shift_of_hand_chosen_slots(monkeypatch):
    """[CLS] a b c d [SEP] e f [SEP] [PAD] [PAD], slots forced at 1 and 4: the text shifts right by the
    slots at or before each position, the internal [SEP] moves from 5 to 7, e and f (the last two tokens of
    the span 1..7) fall off, [CLS], the final [SEP] and the padding stay."""
    ids = torch.tensor([[2, 10, 11, 12, 13, 3, 14, 15, 3, 0, 0]])
    slots = torch.zeros_like(ids, dtype=torch.bool)
    slots[0, [1, 4]] = True
    monkeypatch.setattr(mcl, "random_select", lambda maskable, k, generator=None: slots)
    source, inserted = mcl.insert(maskable_of(ids), torch.tensor([2]), gen())
    assert torch.equal(inserted, slots)
    #                 pos:  0  1  2   3   4  5   6   7  8  9  10
    assert source.tolist() == [[0, 0, 1, 2, 0, 3, 4, 5, 8, 9, 10]]  # 0 at the slots (filled)
    assert mcl.shift(ids, source, inserted, MASK).tolist() == [[2, MASK, 10, 11, MASK, 12, 13, 3, 3, 0, 0]]


def test_insert_draws_slots_among_maskable_positions_and_shifts_the_text():
    """Drawn slots, checked against origins() (the rule by hand): slots are maskable positions, k per row
    (capped by the maskable count), the shifted row keeps its length, [CLS], its final [SEP] and padding,
    and the internal [SEP] moves with the text."""
    ids = torch.tensor([[2, 10, 11, 12, 13, 3, 14, 15, 3, 0, 0],
                        [2, 20, 21, 3, 22, 23, 24, 25, 26, 27, 3]])
    maskable = maskable_of(ids)
    for k in ((0, 0), (1, 2), (2, 3), (3, 5), (6, 8)):
        for seed in range(4):
            source, inserted = mcl.insert(maskable, torch.tensor(k), gen(seed))
            shifted = mcl.shift(ids, source, inserted, MASK)
            assert inserted.sum(-1).tolist() == list(k)
            assert not (inserted & ~maskable).any()
            for b in range(2):
                where = origins(maskable[b], inserted[b])
                assert shifted[b].tolist() == [MASK if p is None else int(ids[b, p]) for p in where]
                # the span (first to last maskable position): its text, less its last k[b] tokens
                first, last = 1, int(maskable[b].nonzero().max())
                text = ids[b, first:last + 1].tolist()
                window = zip(shifted[b, first:last + 1].tolist(), inserted[b, first:last + 1].tolist())
                kept = [t for t, slot in window if not slot]
                assert kept == text[:len(text) - k[b]]
                # the internal [SEP] (input 5 in row 0, 3 in row 1) moves right by the slots up to its new
                # place, or has fallen off with the span's last k[b] tokens
                sep = 5 if b == 0 else 3
                if sep in where:
                    j = where.index(sep)
                    assert shifted[b, j] == 3 and j - sep == int(inserted[b, :j + 1].sum())
                else:
                    assert sep > last - k[b]
            assert shifted[0, 0] == 2 and shifted[0, 8:].tolist() == [3, 0, 0]  # [CLS], final [SEP], padding
            assert shifted[1, 0] == 2 and shifted[1, -1] == 3


# -- 3. The courses of one micro-batch: corrupt() and course_of() -----------------------------------


def test_with_every_course_off_corrupt_is_electra_s_mask():
    ids = blocks(6, 24, seed=3)
    ids[1, 15:] = TOK.pad_id  # a shorter row
    for seed in range(4):
        c = mcl.corrupt(mcl.Courses(), TOK, ids, gen(seed))
        m = electra.mask(electra.Objective(), TOK, ids, gen(seed))
        for a, b in zip(c.masked, m):
            assert torch.equal(a, b)
        assert torch.equal(c.d_base, ids) and torch.equal(c.reference, ids) and not c.inserted.any()
        assert torch.equal(c.corruptible, maskable_of(ids))


def replica(ids, seed):
    """corrupt()'s draws, redone piece by piece from the same seed: RTD (electra.mask), STD's budget and
    swap, ITD's budget and slots."""
    g, maskable = gen(seed), maskable_of(ids)
    rtd = electra.mask(electra.Objective(), TOK, ids, g)
    _, swap_source = mcl.swap(ids, maskable & ~rtd.selected, budget(maskable, 0.15, g), g)
    _, slots = mcl.insert(maskable, budget(maskable, 0.15, g), g)
    return rtd, swap_source, slots


def test_corrupt_composes_rtd_then_std_then_itd():
    """Every field of corrupt() against the pieces drawn from the same seed and composed by hand: an
    output position j takes input position p = origins()[j] (None: a slot); its token is the swapped
    token of p, G's input RTD's masked token of p, [MASK] at a slot in both."""
    ids = blocks(5, 24, seed=4)
    ids[2, 18:] = TOK.pad_id
    for seed in range(3):
        c = mcl.corrupt(COURSES, TOK, ids, gen(seed))
        rtd, swap_source, slots = replica(ids, seed)
        maskable = maskable_of(ids)
        assert torch.equal(c.inserted, slots)
        selected_flat, targets = [], []
        for b in range(ids.shape[0]):
            swapped = ids[b][swap_source[b]]
            g_input = rtd.input_ids[b][swap_source[b]]
            moved = swap_source[b] != torch.arange(24)
            assert not (moved & rtd.selected[b]).any() and not (moved & ~maskable[b]).any()  # STD's own
            for j, p in enumerate(origins(maskable[b], slots[b])):
                want = ((MASK, MASK, MASK, True, True) if p is None else
                        (int(ids[b, p]), int(swapped[p]), int(g_input[p]), bool(rtd.selected[b, p]),
                         bool(maskable[b, p])))
                got = (int(c.reference[b, j]), int(c.d_base[b, j]), int(c.masked.input_ids[b, j]),
                       bool(c.masked.selected[b, j]), bool(c.corruptible[b, j]))
                assert got == want, (seed, b, j)
                if want[3]:
                    selected_flat.append(b * 24 + j)
                    targets.append(IGNORE_INDEX if p is None else int(ids[b, p]))
        size = 5 * 2 * (int(24 * 0.15) + 1)  # the bound of RTD's budget and of ITD's, per row
        assert c.masked.positions.tolist() == selected_flat + [0] * (size - len(selected_flat))
        assert c.masked.targets.tolist() == targets + [IGNORE_INDEX] * (size - len(targets))


def expected_courses(ids, seed, d_input):
    """course_of() by hand from the pieces: a slot is INSERTED; else the input position p it came from
    was RTD's (REPLACED unless G's sample is the original), or was swapped with a different token
    (SWAPPED), or is ORIGINAL."""
    rtd, swap_source, slots = replica(ids, seed)
    out = torch.zeros_like(ids)
    for b in range(ids.shape[0]):
        for j, p in enumerate(origins(maskable_of(ids)[b], slots[b])):
            if p is None:
                out[b, j] = mcl.INSERTED
            elif rtd.selected[b, p]:
                out[b, j] = mcl.REPLACED if d_input[b, j] != ids[b, p] else mcl.ORIGINAL
            elif ids[b, swap_source[b, p]] != ids[b, p]:
                out[b, j] = mcl.SWAPPED
    return out


def test_course_of_labels_each_position_by_the_course_that_changed_it():
    """G's samples are made by hand: at every third masked position the original token (the label is
    ORIGINAL, as in RTD), elsewhere another word. Repeated words make some swaps exchange equal tokens."""
    ids = torch.randint(5, 12, (6, 24), generator=gen(7))  # 7 different words: equal swaps happen
    ids[:, 0], ids[:, -1] = TOK.cls_id, TOK.sep_id
    seen, equal_samples, equal_swaps = set(), 0, 0
    for seed in range(3):
        c = mcl.corrupt(COURSES, TOK, ids, gen(seed))
        valid = c.masked.positions[: int(c.masked.selected.sum())]
        reference = c.reference.flatten()[valid]
        sampled = torch.where(torch.arange(len(valid)) % 3 == 0, reference, 50 + torch.arange(len(valid)))
        d_input = electra.replace(c.d_base, c.masked.selected, sampled)
        course = mcl.course_of(c, d_input)
        assert torch.equal(course, expected_courses(ids, seed, d_input))
        seen |= set(course.flatten().tolist())
        _, swap_source, _ = replica(ids, seed)
        equal_samples += int(((course == mcl.ORIGINAL) & c.masked.selected & ~c.inserted).sum())
        swapped = swap_source != torch.arange(24)
        equal_swaps += int((swapped & (ids.gather(-1, swap_source) == ids)).sum())
        # a position no course touched (neither moved nor selected) is ORIGINAL
        moved = c.d_base != c.reference
        assert not (course[~moved & ~c.masked.selected] > 0).any()
    assert seen == {mcl.ORIGINAL, mcl.REPLACED, mcl.SWAPPED, mcl.INSERTED}
    assert equal_samples > 0 and equal_swaps > 0  # both "yet original" cases did occur


def test_the_courses_properties_and_shares_on_many_rows():
    """2,000 rows of 62 words: RTD's positions are [MASK] (85%) or kept (15%), never a random token; STD's
    are disjoint from RTD's; ITD's slots are [MASK] in G's input and selected; G's targets are the reference
    at RTD's positions and IGNORE at the slots. The shares of positives, by hand (n = 62 words, 64
    tokens; G's samples always differ from the original; words uniform over 96 ids):
      ITD: E[k] = 62 x 0.15 = 9.3 slots                                     -> 9.3 / 64   = 0.1453
      RTD: 9.3 masks, each survives unless among the span's last k_ITD:  9.3 x (1 - 9.3/62) / 64 = 0.1235
      STD: budget 9 (p 0.7) or 10 (p 0.3), rounded down to even: 8.6 moved; the same survival, and a swap
           with an equal word (p 1/96) is no positive:       8.6 x 0.85 x 95/96 / 64 = 0.1131
    Over 20 other seeds these shares scatter around the hand values with a standard deviation of 0.0004
    (RTD, STD) and 0.00015 (ITD), none of them off by more than 0.0007: the tolerance, 0.002, is 5 of
    them. A swap not rounded to even (0.1221) or RTD's masks not falling off (0.1453) would be seen."""
    rows, length = 2000, 64
    ids = blocks(rows, length, seed=8)
    c = mcl.corrupt(COURSES, TOK, ids, gen(9))
    rtd = c.masked.selected & ~c.inserted
    at = c.masked.input_ids[rtd]
    assert ((at == MASK) | (at == c.reference[rtd])).all()  # no random token
    share_masked = float((at == MASK).float().mean())
    assert abs(share_masked - 0.85) < 0.01, share_masked  # about 15,800 tokens: 0.003 is one SE
    moved = (c.d_base != c.reference) & ~c.inserted
    assert not (moved & c.masked.selected).any()
    assert (c.masked.input_ids[c.inserted] == MASK).all() and (c.d_base[c.inserted] == MASK).all()
    assert c.masked.selected[c.inserted].all()
    valid = c.masked.positions[: int(c.masked.selected.sum())]
    slot = c.inserted.flatten()[valid]
    assert (c.masked.targets[: len(valid)][slot] == IGNORE_INDEX).all()
    assert torch.equal(c.masked.targets[: len(valid)][~slot], c.reference.flatten()[valid][~slot])
    sampled = (c.reference.flatten()[valid] - 5 + 1) % 96 + 5  # never the original
    course = mcl.course_of(c, electra.replace(c.d_base, c.masked.selected, sampled))
    shares = {k: float((course == k).float().mean()) for k in (mcl.REPLACED, mcl.SWAPPED, mcl.INSERTED)}
    assert shares[mcl.INSERTED] == pytest.approx(9.3 / 64, abs=0.002)
    assert shares[mcl.REPLACED] == pytest.approx(9.3 * (1 - 9.3 / 62) / 64, abs=0.002)
    assert shares[mcl.SWAPPED] == pytest.approx(8.6 * 0.85 * 95 / 96 / 64, abs=0.002)


# -- 4. The correction notebook ------------------------------------------------------------------------


def test_notebook_holds_the_most_confident_mistakes():
    """Row 0: logits 5 -2 3 0.5 -4 1, labels F T F F T T, position 0 not corruptible. Wrong and corruptible:
    1 (BCE softplus(2) = 2.13), 2 (softplus(3) = 3.05), 3 (softplus(0.5) = 0.97), 4 (softplus(4) = 4.02);
    position 0 is wrong but not corruptible. Size 0.5 of 6: 3 slots, most confident first: 4, 2, 1.
    Row 1: only position 3 is wrong (logit 0 says "original", the label is positive): 1 mistake, 2
    padding slots. Flat indices: row x 6 + position."""
    d_logits = torch.tensor([[5.0, -2.0, 3.0, 0.5, -4.0, 1.0], [-1.0, 2.0, -3.0, 0.0, 0.0, -5.0]])
    positive = torch.tensor([[False, True, False, False, True, True],
                             [False, True, False, True, False, False]])
    corruptible = torch.tensor([[False, True, True, True, True, True], [True, True, True, True, True, False]])
    positions, valid = mcl.notebook(d_logits, positive, corruptible, 0.5)
    assert positions[:3].tolist() == [4, 2, 1] and positions[3] == 6 + 3
    assert valid.tolist() == [True, True, True, True, False, False]
    assert positions.shape == (6,) and all(6 <= p < 12 for p in positions[4:].tolist())  # in row 1
    positions, valid = mcl.notebook(d_logits, positive, corruptible, 0.4)  # int(6 x 0.4) = 2 slots
    assert positions.tolist()[:3] == [4, 2, 9] and valid.tolist() == [True, True, True, False]
    positions, valid = mcl.notebook(d_logits.to(torch.bfloat16), positive, corruptible, 0.2)  # int(1.2)
    assert positions.tolist() == [4, 9] and valid.tolist() == [True, True]
    assert mcl.notebook_length(mcl.Courses(notebook_size=0.5), (2, 6)) == 6


class StubPair:
    """A model of hand-made parts: G sure of the tokens `sure` (one per notebook slot, in order), D's logits
    all 0; both record their inputs and whether gradients were on."""

    def __init__(self, sure):
        self.sure, self.calls = sure, []

        def generator(input_ids, attention_mask=None, positions=None):
            self.calls.append(("G", input_ids.clone(), positions.clone(), torch.is_grad_enabled()))
            return F.one_hot(torch.tensor(self.sure), 101).float() * 1000

        def discriminator(input_ids, attention_mask=None):
            self.calls.append(("D", input_ids.clone(), None, torch.is_grad_enabled()))
            return torch.zeros(input_ids.shape)

        self.generator, self.discriminator = generator, discriminator


def hand_made_corrupted():
    """Two copies of the row [CLS] a b c d e f [SEP] (ids 10..15) with a slot at 2: reference
    [CLS] a [MASK] b c d e [SEP] (f fell off); RTD masked position 4 (c); STD swapped d and e (5, 6). G
    sampled 60 at the slot and 61 at 4, so D reads [CLS] a 60 b 61 e d [SEP]: positives at 2 (INSERTED),
    4 (REPLACED), 5 and 6 (SWAPPED)."""
    reference = torch.tensor([[2, 10, MASK, 11, 12, 13, 14, 3]] * 2)
    d_input = torch.tensor([[2, 10, 60, 11, 61, 14, 13, 3]] * 2)
    inserted = torch.zeros(2, 8, dtype=torch.bool)
    inserted[:, 2] = True
    selected = inserted.clone()
    selected[:, 4] = True
    corruptible = torch.ones(2, 8, dtype=torch.bool)
    corruptible[:, [0, 7]] = False
    c = mcl.Corrupted(electra.Masked(None, selected, None, None), None, reference, inserted, corruptible)
    return c, d_input


def test_correction_by_hand():
    """D's logits: row 0 misses the slot 2 (-3: BCE 3.05), flags the original b at 3 (1: BCE 1.31), misses
    the swap at 5 (-0.5: BCE 0.97), is right elsewhere ([CLS]'s 5 is not corruptible); row 1 only misses
    the swap at 6 (-1). Notebook of 0.5 x 8 = 4 slots per row: row 0 -> 2, 3, 5 and a padding slot; row 1
    -> 14 (= 8 + 6) and three padding slots.
    G's course: G reads D's input with [MASK] at 2, 3, 5 and 14; its targets: IGNORE at the slot 2, the
    reference b (11) at 3, d (13) at 5, e (14) at 14, IGNORE in the padding.
    D's course: G is sure of [MASK], 11, 22, 23 | 24, 25, 26, 27 at the notebook's slots: the second input
    is D's with [MASK] at 2 (the reference's filler at a slot, yet the label stays positive: a slot), 11 at
    3 (the reference again: label negative), 22 at 5, 24 at 14; its labels are inserted | differs from
    the reference."""
    c, d_input = hand_made_corrupted()
    positive = mcl.course_of(c, d_input) > 0
    assert positive[0].tolist() == [False, False, True, False, True, True, True, False]
    d_logits = torch.tensor([[5.0, -2.0, -3.0, 1.0, 2.0, -0.5, 4.0, -1.0],
                             [-5.0, -2.0, 3.0, -1.0, 2.0, 0.5, -1.0, -1.0]])
    courses = mcl.Courses(correct_generator=1.0, correct_discriminator=1.0, notebook_size=0.5)
    stub = StubPair([MASK, 11, 22, 23, 24, 25, 26, 27])
    uniform = torch.rand(8, 101, generator=gen())
    g_logits, targets, d_again, labels = mcl.correction(courses, MASK, c, uniform, stub, None, d_input,
                                                        d_logits)
    (_, g_input, positions, grad), (_, again, _, _) = stub.calls
    assert positions[[0, 1, 2, 4]].tolist() == [2, 3, 5, 14] and grad
    valid = [True, True, True, False, True, False, False, False]
    expected_g = d_input.clone()
    expected_g[0, [2, 3, 5]] = MASK
    expected_g[1, 6] = MASK
    assert torch.equal(g_input, expected_g)
    ignore = IGNORE_INDEX
    assert targets.tolist() == [ignore, 11, 13, ignore, 14, ignore, ignore, ignore]
    expected_again = d_input.clone()
    expected_again[0, [2, 3, 5]] = torch.tensor([MASK, 11, 22])
    expected_again[1, 6] = 24
    assert torch.equal(again, expected_again)
    assert torch.equal((again != d_input).flatten()[positions], torch.tensor(valid) & (positions != 3))
    assert labels.tolist() == [[False, False, True, False, True, True, True, False],
                               [False, False, True, False, True, True, True, False]]
    assert d_again.shape == (2, 8) and torch.equal(g_logits, F.one_hot(torch.tensor(stub.sure), 101) * 1000.0)
    # G's course alone: no second D pass; D's course alone: G's pass without gradient
    stub = StubPair([20, 11, 22, 23, 24, 25, 26, 27])
    only_g = mcl.correction(mcl.Courses(correct_generator=1.0, notebook_size=0.5), MASK, c, None, stub, None,
                            d_input, d_logits)
    assert only_g[2:] == (None, None) and [call[0] for call in stub.calls] == ["G"] and stub.calls[0][3]
    stub = StubPair([20, 11, 22, 23, 24, 25, 26, 27])
    mcl.correction(mcl.Courses(correct_discriminator=1.0, notebook_size=0.5), MASK, c, uniform, stub, None,
                   d_input, d_logits)
    assert [(call[0], call[3]) for call in stub.calls] == [("G", False), ("D", True)]


# -- 5. One micro-batch: micro_batch_loss() ------------------------------------------------------------


def test_with_every_course_off_the_step_is_electra_s_bit_for_bit():
    model, ids = pair().train(), blocks(4, 24, seed=2)
    for seed in range(4):
        results = []
        for step in (mcl.micro_batch_loss, electra.micro_batch_loss):
            torch.manual_seed(seed)  # dropout
            model.zero_grad(set_to_none=True)
            loss, n = step(mcl.Courses(), model, TOK, ids, gen(seed))
            loss.backward()
            results.append((loss, n, [p.grad.clone() for p in model.parameters()]))
        (a, n_a, grads_a), (b, n_b, grads_b) = results
        assert torch.equal(a, b) and torch.equal(n_a, n_b)
        assert all(torch.equal(x, y) for x, y in zip(grads_a, grads_b))


def test_the_loss_with_every_course_on_equals_a_hand_computation():
    """The same draws from the same seed (corrupt, G's noise, the notebook's noise), then each loss token
    by token: G's cross-entropy at RTD's masks + lambda x D's BCE over every token, + 0.7 x G's
    cross-entropy on the notebook (its valid, non-slot entries) + 0.3 x lambda x D's BCE on the second
    input. lambda = 20, so that a missing lambda on the second pass shows."""
    courses = mcl.Courses(electra_lambda=20.0, std_ratio=0.15, itd_ratio=0.15, correct_generator=0.7,
                          correct_discriminator=0.3, notebook_size=0.25)
    model, ids = pair(**NO_DROPOUT).train(), blocks(3, 24, seed=5)
    got, n_masked = mcl.micro_batch_loss(courses, model, TOK, ids, gen(5))

    g = gen(5)
    c = mcl.corrupt(courses, TOK, ids, g)
    uniform = torch.rand((len(c.masked.positions), 101), generator=g)
    again_noise = torch.rand((3 * int(24 * 0.25), 101), generator=g)
    where = c.masked.selected.nonzero().tolist()
    logits = model.generator(c.masked.input_ids)
    d_input, g_loss, rtd = c.d_base.clone(), 0.0, 0
    for slot, (b, i) in enumerate(where):
        if not c.inserted[b, i]:
            g_loss, rtd = g_loss - logits[b, i].log_softmax(-1)[c.reference[b, i]], rtd + 1
        d_input[b, i] = int(torch.argmax(logits[b, i].detach() - torch.log(-torch.log(uniform[slot]))))
    assert n_masked == rtd >= 3
    labels = mcl.course_of(c, d_input) > 0
    d_logits = model.discriminator(d_input)
    first = g_loss / rtd + 20 * F.binary_cross_entropy_with_logits(d_logits, labels.float())

    positions, valid = mcl.notebook(d_logits, labels, c.corruptible, 0.25)
    assert valid.sum() >= 2
    g_input = d_input.clone().flatten()
    g_input[positions[valid]] = MASK
    g_input = g_input.view_as(ids)
    notebook_logits = model.generator(g_input)
    again = d_input.clone()
    nb_loss, nb_count = 0.0, 0
    for slot, (flat, ok) in enumerate(zip(positions.tolist(), valid.tolist())):
        b, i = divmod(flat, 24)
        if not ok:
            continue
        if not c.inserted[b, i]:
            nb_loss = nb_loss - notebook_logits[b, i].log_softmax(-1)[c.reference[b, i]]
            nb_count += 1
        gumbel = -torch.log(-torch.log(again_noise[slot]))
        again[b, i] = int(torch.argmax(notebook_logits[b, i].detach() + gumbel))
    labels_again = c.inserted | (again != c.reference)
    second = F.binary_cross_entropy_with_logits(model.discriminator(again), labels_again.float())
    expected = first + 0.7 * nb_loss / max(nb_count, 1) + 0.3 * 20 * second
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert c.inserted.any() and (mcl.course_of(c, d_input) == mcl.SWAPPED).any()


def generator_weights(model):
    """The gradients of G's own weights: not the embeddings it shares with D (its output layer included)."""
    shared = {id(p) for p in model.discriminator.parameters()}
    return {n: p.grad.clone() for n, p in model.generator.named_parameters() if id(p) not in shared}


def test_gradients_reach_both_models_and_the_notebook_pass_of_g_only_with_its_course():
    """G's own weights (not the shared embeddings) learn from G's losses alone: with --correct-generator 0
    their gradient is the plain step's exactly, whatever D's course; with it on, it differs. D's head
    learns in every case. A hook records whether each G pass carried gradient."""
    ids = blocks(4, 24, seed=6)
    grads, passes = {}, {}
    for name, weights in (("off", (0.0, 0.0)), ("d", (0.0, 1.0)), ("g", (1.0, 0.0)), ("both", (1.0, 1.0))):
        model = pair(**NO_DROPOUT).train()
        calls = []
        model.generator.register_forward_hook(lambda module, args, out: calls.append(out.requires_grad))
        courses = mcl.Courses(std_ratio=0.15, itd_ratio=0.15, correct_generator=weights[0],
                              correct_discriminator=weights[1])
        loss, _ = mcl.micro_batch_loss(courses, model, TOK, ids, gen(1))
        loss.backward()
        grads[name], passes[name] = generator_weights(model), calls
        assert model.discriminator.prediction.weight.grad.abs().sum() > 0
        assert grads[name]["encoder.layers.0.q.weight"].abs().sum() > 0
    assert passes == {"off": [True], "d": [True, False], "g": [True, True], "both": [True, True]}
    for n in grads["off"]:
        assert torch.equal(grads["d"][n], grads["off"][n]), n
    assert any(not torch.equal(grads["g"][n], grads["off"][n]) for n in grads["off"])


# -- 6. Held-out detection, course by course -----------------------------------------------------------


# tokens, originals, originals flagged, RTD's masks, G's correct; then (positives, flagged) for RTD, STD, ITD
COUNTS = torch.tensor([100, 70, 10, 12, 3, 12, 6, 10, 5, 8, 2])


def test_detection_metrics_by_hand():
    """From the counts above: RTD precision 6 / (6 + 10) (STD's and ITD's positives left out), recall 6/12,
    F1 2 x 0.375 x 0.5 / 0.875; STD 5/15, 5/10, F1 0.4; ITD 2/12, 2/8, F1 0.2. Over all positives: 13 of 30
    flagged, 23 flagged in all: precision 13/23, recall 13/30, F1 26/53; accuracy (13 + 70 - 10) / 100;
    the all-"original" baseline 70/100; G 3/12."""
    m = mcl.detection_metrics(COURSES, COUNTS)
    want = {"positive_share": 0.3, "precision": 13 / 23, "recall": 13 / 30, "f1": 26 / 53, "accuracy": 0.73,
            "baseline_accuracy": 0.7, "generator_accuracy": 0.25,
            "rtd_share": 0.12, "rtd_precision": 0.375, "rtd_recall": 0.5, "rtd_f1": 0.375 / 0.875,
            "std_share": 0.1, "std_precision": 1 / 3, "std_recall": 0.5, "std_f1": 0.4,
            "itd_share": 0.08, "itd_precision": 1 / 6, "itd_recall": 0.25, "itd_f1": 0.2}
    assert m.keys() == want.keys()
    for k, v in want.items():
        assert m[k] == pytest.approx(v, abs=1e-12), k
    # STD off: no STD keys; a course with no positive and nothing flagged: 0, not a division by zero
    m = mcl.detection_metrics(mcl.Courses(itd_ratio=0.1), torch.tensor([10, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
    assert not any(k.startswith("std_") for k in m) and m["itd_f1"] == m["rtd_f1"] == m["f1"] == 0.0
    assert m["accuracy"] == m["baseline_accuracy"] == 1.0 and m["generator_accuracy"] == 0.0


def test_evaluation_text_and_report():
    m = mcl.detection_metrics(COURSES, COUNTS)
    assert mcl.evaluation_text(m) == ("held-out positives 30.0%: D's F1 0.491 (RTD 12.0% F1 0.429, STD 10.0% "
                                      "F1 0.400, ITD 8.0% F1 0.200) | G's MLM accuracy 0.250")
    end = {**m, "f1": 0.75, "phase": "end", "step": 9}
    lines = mcl.report([{**m, "phase": "start", "step": 0}, end])
    assert lines[0] == "held-out detection, courses RTD STD ITD (start, step 0 -> end, step 9):"
    assert "  D's F1 over all positives (the all-\"original\" baseline's: 0): 0.491 -> 0.750" in lines
    assert "  STD: D's recall / F1: 0.500 / 0.400 -> 0.500 / 0.400" in lines
    assert "  the all-\"original\" baseline's: 0.700 -> 0.700" in lines


def test_detection_counts_add_up():
    """On a real batch: every real token is an original or a positive of one course, ITD's positives are
    the slots drawn (the budget's, replayed), and D's hits never exceed the positives."""
    model, ids = pair().train(), blocks(6, 32, seed=3)
    counts = mcl.detection_counts(COURSES, model, TOK, ids, gen(4)).tolist()
    assert model.training
    tokens, original, false, masked, correct, *per_course = counts
    assert tokens == 6 * 32 and original + sum(per_course[::2]) == tokens and false <= original
    assert all(hit <= n for n, hit in zip(per_course[::2], per_course[1::2])) and correct <= masked
    assert per_course[4] == int(replica(ids, 4)[2].sum()) > 0
    assert counts == mcl.detection_counts(COURSES, model, TOK, ids, gen(4)).tolist()  # eval mode: no dropout


# -- 7. Course soups ------------------------------------------------------------------------------------


def test_average_is_the_exact_mean_in_float64():
    """w: the mean of 1, 2 / 2, 4 / 4, 9 is 7/3, 5 (in float32: float32(7/3)); h, in bfloat16: 256, 1, 1
    average to 86 in float64, where a bfloat16 sum (256 + 1 rounds to 256) would give 85.5."""
    states = [{"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([256.0], dtype=torch.bfloat16)},
              {"w": torch.tensor([2.0, 4.0]), "h": torch.tensor([1.0], dtype=torch.bfloat16)},
              {"w": torch.tensor([4.0, 9.0]), "h": torch.tensor([1.0], dtype=torch.bfloat16)}]
    soup = mcl.average(states, ["a", "b", "c"])
    assert soup["w"].dtype == torch.float32 and soup["h"].dtype == torch.bfloat16
    assert torch.equal(soup["w"], torch.tensor([7 / 3, 5.0], dtype=torch.float64).float())
    assert soup["h"].item() == 86.0


@pytest.mark.parametrize("other, message", [
    ({"w": torch.zeros(2)}, "b: its tensors differ from a's: v is in one only (1 such)"),
    ({"w": torch.zeros(2), "v": torch.zeros(1), "u": torch.zeros(1)}, "b: its tensors differ from a's: u is"),
    ({"w": torch.zeros(3), "v": torch.zeros(1)}, "b: w has shape (3,), a's (2,); only models of one"),
])
def test_average_refuses_models_of_another_architecture(other, message):
    first = {"w": torch.zeros(2), "v": torch.zeros(1)}
    with pytest.raises(ValueError) as refused:
        mcl.average([first, first, other], ["a", "c", "b"])
    assert message in str(refused.value)


def test_greedy_soup_keeps_a_model_only_if_the_soup_does_not_drop():
    """Score: -max(0, |x - 3| - 1), flat (0) on [2, 4]. Models, given out of order: D (x = 20, own -16),
    B (x = 5, own -1), A (x = 3, own 0), C (x = 4.5, own -0.5). By own score: A, C, B, D. A alone: 0. A + C:
    x = 3.75, 0: a tie, kept. A + C + B: x = 12.5/3 = 4.17, -1/6: dropped. A + C + D: x = 27.5/3 = 9.17,
    -31/6: dropped. The soup: x = 3.75, y (not scored) the mean of A's and C's."""
    def state(x, y):
        return {"x": torch.tensor(x, dtype=torch.float64), "y": torch.tensor([y, -y], dtype=torch.float64)}

    scored = []

    def score(s):
        scored.append(float(s["x"]))
        return -max(0.0, abs(float(s["x"]) - 3) - 1)

    states = [state(20.0, 1.0), state(5.0, 2.0), state(3.0, 3.0), state(4.5, 5.0)]
    names = ["D", "B", "A", "C"]
    soup, kept, log = mcl.greedy_soup(states, names, score)
    assert kept == ["A", "C"] and soup["x"].item() == 3.75 and soup["y"].tolist() == [4.0, -4.0]
    assert [(e["model"], e["score"], e["kept"]) for e in log] == [("A", 0.0, True), ("C", -0.5, True),
                                                                   ("B", -1.0, False), ("D", -16.0, False)]
    assert [e["soup"] for e in log] == pytest.approx([0.0, 0.0, -1 / 6, -31 / 6])
    assert scored == pytest.approx([20.0, 5.0, 3.0, 4.5, 3.75, 12.5 / 3, 27.5 / 3])


# -- 8. The settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    (dict(std_ratio=float("nan")), r"--std-ratio nan, --itd-ratio 0.0: shares in \[0, 1\)"),
    (dict(itd_ratio=1.0), r"--std-ratio 0.0, --itd-ratio 1.0"),
    (dict(std_ratio=-0.1), r"--std-ratio -0.1"),
    (dict(std_ratio=0.5, itd_ratio=0.4), r"with --electra-mask-ratio 0.15, sum to less than 1"),
    (dict(correct_generator=-1.0), r"--correct-generator -1.0: a weight >= 0"),
    (dict(correct_discriminator=float("inf")), r"--correct-discriminator inf: a weight >= 0"),
    (dict(notebook_size=0.0), r"--notebook-size 0.0: a share of each sequence in \(0, 1\]"),
    (dict(notebook_size=1.5), r"--notebook-size 1.5"),
])
def test_bad_courses_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        mcl.Courses(**settings)


def test_the_courses_switches():
    assert mcl.Courses().plain and not mcl.Courses(notebook_size=0.5).correcting
    assert not mcl.Courses(correct_discriminator=0.1).plain and mcl.Courses(correct_generator=1).correcting
    assert mcl.Courses(itd_ratio=0.1).active == {mcl.REPLACED: "rtd", mcl.INSERTED: "itd"}
    assert mcl.Courses(correct_generator=1).active == {mcl.REPLACED: "rtd"}


# -- 9. train.py with the courses on -------------------------------------------------------------------

def test_a_run_with_the_courses_trains_and_reports_each(tmp_path, tiny_checkpoint, tiny_corpus, capsys):
    out = tmp_path / "run"
    history = train.main(argv(tiny_checkpoint, tiny_corpus, out, *MCL_OPTIONS, "--steps", "4", "--eval-every",
                              "2", "--log-every", "1", "--lr", "3e-3", "--schedule", "constant"))
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    evals = [h for h in history if "positive_share" in h]
    assert [(e["phase"], e["step"]) for e in evals] == [("start", 0), ("method", 2), ("end", 4)]
    for e in evals:
        assert {"rtd_f1", "std_f1", "itd_f1", "f1", "accuracy", "generator_accuracy"} <= e.keys()
        # blocks of 30 words: 0.15 of them per course, less the swaps rounded to even and what falls off
        assert 0.05 < e["rtd_share"] < 0.15 and 0.05 < e["std_share"] < 0.15 and 0.1 < e["itd_share"] < 0.16
        assert e["positive_share"] == pytest.approx(e["rtd_share"] + e["std_share"] + e["itd_share"])
        assert e["baseline_accuracy"] == pytest.approx(1 - e["positive_share"])
    printed = capsys.readouterr().out
    assert "held-out detection, courses RTD STD ITD (start, step 0 -> end, step 4):" in printed
    assert "  ITD: D's recall / F1: " in printed and "MCL's courses on ELECTRA: std_ratio=0.15" in printed
    assert f"checkpoint: {latest_checkpoint(out)}" in printed


def test_resume_with_the_courses_equals_uninterrupted(tmp_path, tiny_checkpoint, tiny_corpus, monkeypatch):
    common = [*MCL_OPTIONS, "--steps", "4", "--save-every", "100", "--eval-every", "2", "--log-every", "1",
              "--micro-batch-size", "4"]
    resumed_equals_uninterrupted(tmp_path, tiny_checkpoint, tiny_corpus, monkeypatch, common, stop=3)


def test_torchrun_two_processes_with_the_courses_equal_one(tmp_path, tiny_checkpoint, tiny_corpus):
    common = [*MCL_OPTIONS, "--steps", "3", "--micro-batch-size", "4", "--eval-every", "100"]
    two_processes_equal_one(tmp_path, tiny_checkpoint, tiny_corpus, common, port=29537)


def test_the_bf16_path_trains_with_the_courses(tmp_path, tiny_checkpoint, tiny_corpus):
    out = tmp_path / "run"
    history = train.main(argv(tiny_checkpoint, tiny_corpus, out, *MCL_OPTIONS, "--precision", "bf16",
                              "--steps", "4", "--lr", "3e-3", "--log-every", "1", "--eval-every", "100"))
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert [h["phase"] for h in history if "itd_f1" in h] == ["start", "end"]


def test_the_mcl_preset_parses_with_its_courses_on():
    args, courses = train.parse_args(["--preset", "mcl"])
    assert args.objective == "electra" and isinstance(courses, mcl.Courses)
    assert courses == mcl.Courses(std_ratio=0.15, itd_ratio=0.15, correct_generator=1.0,
                                  correct_discriminator=1.0)
    assert train.parse_args(["--preset", "electra"])[1].plain


@pytest.mark.parametrize("options, message", [
    (["--std-ratio", "nan"], "argument --std-ratio: nan is not a finite number"),
    (["--itd-ratio", "1"], "argument --itd-ratio: 1 is not in [0, 1)"),
    (["--std-ratio", "0.5", "--itd-ratio", "0.4"],
     "--std-ratio 0.5, --itd-ratio 0.4: shares in [0, 1) that, with --electra-mask-ratio 0.15, sum to less "
     "than 1"),
    (["--correct-generator", "-1"], "argument --correct-generator: -1 is not in [0, inf)"),
    (["--notebook-size", "0"], "argument --notebook-size: 0 is not in (0, 1]"),
])
def test_bad_course_options_are_refused_at_parse_time(options, message, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--objective", "electra", *options])
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("options, message", [
    # MCL's courses are options of the ELECTRA objective
    (["--std-ratio", "0.1"], "--std-ratio: ELECTRA's, meaningless with --objective se"),
    (["--notebook-size", "0.15"], "--notebook-size: ELECTRA's"),  # typed, at its default
    (["--preset", "mcl", "--objective", "se"], "--itd-ratio (from --preset mcl), --correct-generator (from "
                                                 "--preset mcl)"),
])
def test_an_mcl_option_with_self_evolution_is_refused(options, message, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(options)
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
