"""Grader of exercise 7 (label_smoothing.py): token-specific label smoothing, the loss of SE stage 2.

The expected losses are computed here from explicit target distributions,
(1 - alpha) * onehot(x_i) + alpha * softmax(reference_i), in float64 and by
hand (never with the function under test or smoothing.py), or with torch's
own cross_entropy where the paper says TLS reduces to it. Each test checks
one property; that the function returns a 0-dim floating tensor is checked
first, as a precondition, so that a per-row result is reported as such.
"""

import pytest
import torch
import torch.nn.functional as F

from grading import VOCAB, gen
from masking import IGNORE_INDEX

EXERCISE = "label_smoothing"
RTOL, ATOL = 1e-5, 1e-6  # float32 arithmetic is far inside this; bf16 rounding (0.4%) is far outside


def check(holds, message):
    """Fail the test with `message` alone (no traceback, no dump of tensors) unless `holds`."""
    if not holds:
        pytest.fail(message, pytrace=False)


def case(seed, n=12, ignored=0.0, scale=2.0, vocab=VOCAB):
    """logits and reference (n, vocab) at random, targets (n,) with a share `ignored` of IGNORE_INDEX."""
    g = gen(seed)
    logits = torch.randn(n, vocab, generator=g) * scale
    reference = torch.randn(n, vocab, generator=g) * scale
    targets = torch.randint(0, vocab, (n,), generator=g)
    targets[torch.rand(n, generator=g) < ignored] = IGNORE_INDEX
    return logits, targets, reference


def log_softmax_by_hand(z):
    """log softmax over the last dim: minus the row maximum, minus the log of the sum of exponentials."""
    top = z.max(-1, keepdim=True).values
    return z - top - (z - top).exp().sum(-1, keepdim=True).log()


def explicit_loss(logits, targets, reference, alpha):
    """The paper's formula in float64 with the (n, vocab) target built in full; mean over counted rows."""
    counted = targets != IGNORE_INDEX
    log_p = log_softmax_by_hand(logits.double())[counted]
    r = log_softmax_by_hand(reference.double()).exp()[counted]
    onehot = torch.zeros_like(log_p)
    onehot[torch.arange(len(log_p)), targets[counted]] = 1.0
    target = (1 - alpha) * onehot + alpha * r
    assert torch.allclose(target.sum(-1), torch.ones(len(target), dtype=torch.float64))  # the grader's own
    return -(target * log_p).sum(-1).mean() if counted.any() else torch.tensor(0.0, dtype=torch.float64)


def loss_of(solution, logits, targets, reference, alpha):
    """The solution's loss, after the precondition: a 0-dim floating tensor."""
    got = solution(logits, targets, reference, alpha)
    check(isinstance(got, torch.Tensor), f"precondition: return a torch.Tensor, not a {type(got).__name__}")
    check(got.dim() == 0, f"precondition: return a 0-dim tensor (the mean over counted rows), "
                          f"not one of shape {tuple(got.shape)}")
    check(got.is_floating_point(), f"precondition: return a floating-point loss, not {got.dtype}")
    return got


def assert_loss(got, want, prop):
    """got == want to RTOL (ATOL near 0); else `prop` and both values."""
    check(torch.isclose(got.detach().double(), want.double(), rtol=RTOL, atol=ATOL),
          f"{prop}: got {got.item():.6f}, expected {want.item():.6f}")


def test_returns_a_0_dim_tensor(solution):
    logits, targets, reference = case(1)
    got = solution(logits, targets, reference, 0.1)
    shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
    check(isinstance(got, torch.Tensor) and got.dim() == 0,
          f"shape: the loss is the mean over counted rows, a 0-dim tensor, not {shape}")


def test_dtype_is_float32_for_float32_and_bfloat16_logits_and_float64_for_float64(solution):
    logits, targets, reference = case(2)
    for dtype, want in [(torch.float32, torch.float32), (torch.bfloat16, torch.float32),
                        (torch.float64, torch.float64)]:
        got = loss_of(solution, logits.to(dtype), targets, reference.to(dtype), 0.1)
        check(got.dtype == want, f"dtype: {dtype} logits must give a {want} loss, not {got.dtype}")


def test_alpha_zero_is_plain_cross_entropy(solution):
    logits, targets, reference = case(4)
    assert_loss(loss_of(solution, logits, targets, reference, 0.0), F.cross_entropy(logits.double(), targets),
                "alpha 0: the loss must equal plain cross-entropy (the reference does not count)")


@pytest.mark.parametrize("level", [0.0, 3.0])
def test_a_uniform_reference_is_ordinary_label_smoothing(solution, level):
    logits, targets, _ = case(5)
    uniform = torch.full_like(logits, level)  # equal logits in every row: r_i = 1/|V|
    assert_loss(loss_of(solution, logits, targets, uniform, 0.3),
                F.cross_entropy(logits.double(), targets, label_smoothing=0.3),
                f"a reference of equal logits ({level}) is r_i = 1/|V|: the loss must equal "
                f"cross_entropy(label_smoothing=0.3)")


@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0])
def test_value_is_the_cross_entropy_against_the_explicit_target(solution, alpha):
    logits, targets, reference = case(3)
    assert_loss(loss_of(solution, logits, targets, reference, alpha),
                explicit_loss(logits, targets, reference, alpha),
                f"alpha {alpha}: mean of -sum_v [(1 - alpha) onehot(x_i) + alpha softmax(reference_i)](v) "
                f"log softmax(logits_i)(v)")


def test_ignored_rows_add_nothing_whatever_their_logits(solution):
    logits, targets, reference = case(7, n=16, ignored=0.4)
    ignored = targets == IGNORE_INDEX
    before = loss_of(solution, logits, targets, reference, 0.1)
    logits2, reference2 = logits.clone(), reference.clone()
    logits2[ignored] = torch.randn(int(ignored.sum()), VOCAB, generator=gen(8)) * 50
    reference2[ignored] = torch.randn(int(ignored.sum()), VOCAB, generator=gen(9)) * 50
    after = loss_of(solution, logits2, targets, reference2, 0.1)
    rows = ignored.nonzero().flatten().tolist()
    assert_loss(after, before, f"IGNORE_INDEX rows {rows[:5]}: changing their logits and reference "
                               f"must not change the loss")


def test_the_mean_is_over_the_counted_rows(solution):
    # Compared with the solution's own loss on the counted rows alone: this checks the mean, not the formula.
    logits, targets, reference = case(6, n=16, ignored=0.4)
    counted = targets != IGNORE_INDEX
    assert 0 < int(counted.sum()) < 16  # sanity of the grader
    assert_loss(loss_of(solution, logits, targets, reference, 0.1),
                loss_of(solution, logits[counted], targets[counted], reference[counted], 0.1),
                f"IGNORE_INDEX rows: the mean divides by the {int(counted.sum())} counted rows, not by all "
                f"16 (the loss of all 16 rows must equal that of the counted rows alone)")


def test_nothing_counted_gives_zero_and_backward_still_runs(solution):
    logits, _, reference = case(10, n=6)
    logits.requires_grad_(True)
    targets = torch.full((6,), IGNORE_INDEX)
    got = loss_of(solution, logits, targets, reference, 0.1)
    check(got.item() == 0.0, f"every target IGNORE_INDEX: the loss must be 0 (not 0 / 0), got {got.item()}")
    check(got.requires_grad, "every target IGNORE_INDEX: the 0 must still carry a gradient (backward runs)")
    got.backward()
    check(logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits)),
          "every target IGNORE_INDEX: the gradient with respect to the logits must be 0")


def finite_difference_gradient(loss_fn, z, eps=1e-6):
    """d loss / d z by central differences, entry by entry (float64; the grader's own, only on failure)."""
    grad = torch.zeros(z.numel(), dtype=z.dtype)
    for entry in range(z.numel()):
        step = torch.zeros(z.numel(), dtype=z.dtype)
        step[entry] = eps
        grad[entry] = (loss_fn(z + step.view_as(z)) - loss_fn(z - step.view_as(z))) / (2 * eps)
    return grad.view_as(z)


def test_the_gradient_passes_gradcheck_in_float64(solution):
    # A small case (5 x 8 logits): gradcheck differentiates numerically, entry by entry.
    logits, targets, reference = (x.double() if x.is_floating_point() else x for x in case(11, n=5, vocab=8))
    targets[2] = IGNORE_INDEX
    logits.requires_grad_(True)
    alpha = 0.3
    loss = loss_of(solution, logits, targets, reference, alpha)
    check(loss.dtype == torch.float64,
          f"precondition: float64 logits must give a float64 loss, not {loss.dtype}")
    check(loss.requires_grad, "precondition: the loss must carry a gradient with respect to the logits")
    loss_fn = lambda z: solution(z, targets, reference, alpha)  # noqa: E731
    if torch.autograd.gradcheck(loss_fn, (logits,), raise_exception=False):
        return
    # Name the rows where the autograd gradient differs from the loss's own finite differences.
    got = torch.autograd.grad(loss, logits)[0]
    with torch.no_grad():
        want = finite_difference_gradient(loss_fn, logits.detach())
    rows = (~torch.isclose(got, want, atol=1e-5, rtol=1e-3)).any(-1).nonzero().flatten().tolist()
    pytest.fail(f"gradient: torch.autograd.gradcheck fails (float64, alpha {alpha}): the autograd gradient "
                f"of rows {rows[:5]} differs from the finite differences of the loss itself", pytrace=False)


def test_no_gradient_flows_into_the_reference(solution):
    logits, targets, reference = case(12)
    logits.requires_grad_(True)
    reference.requires_grad_(True)
    loss = loss_of(solution, logits, targets, reference, 0.1)
    check(loss.requires_grad, "precondition: the loss must carry a gradient with respect to the logits")
    into_reference = torch.autograd.grad(loss, reference, allow_unused=True)[0]
    if into_reference is not None:
        rows = (into_reference != 0).any(-1).nonzero().flatten().tolist()
        check(not rows, f"reference: a gradient flows into the reference at rows {rows[:5]}: detach it, "
                        f"r_i is a target")


def test_bfloat16_logits_are_computed_in_float32(solution):
    logits, targets, reference = case(13, n=64)
    logits, reference = logits.bfloat16(), reference.bfloat16()  # the expected loss uses these bf16 values
    got = loss_of(solution, logits, targets, reference, 0.1)
    check(got.dtype == torch.float32,
          f"precondition: bfloat16 logits must give a float32 loss, not {got.dtype}")
    assert_loss(got, explicit_loss(logits, targets, reference, 0.1),
                "bfloat16 logits: compute in float32 (cast the logits first, not the result)")


@pytest.mark.parametrize("what, targets_shape, reference_shape, named", [
    pytest.param("reference (12, 1)", (12,), (12, 1), "12, 1", id="reference-broadcasts"),
    pytest.param("targets one row short", (11,), (12, VOCAB), "11", id="targets-one-row-short")])
def test_mismatched_shapes_raise_a_value_error_naming_them(solution, what, targets_shape, reference_shape,
                                                          named):
    logits = torch.randn(12, VOCAB, generator=gen(14))
    targets = torch.randint(0, VOCAB, targets_shape, generator=gen(15))
    reference = torch.randn(reference_shape, generator=gen(16))
    try:
        got = solution(logits, targets, reference, 0.1)
    except ValueError as e:
        check(named in str(e), f"mismatched shapes ({what}): the ValueError {str(e)!r} should name {named!r}")
        return
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 (any other error is the wrong one)
        pytest.fail(f"mismatched shapes ({what}): must raise a ValueError, not {type(e).__name__}: "
                    f"{str(e).splitlines()[0][:120]}", pytrace=False)
    got = f"a {tuple(got.shape)} tensor" if isinstance(got, torch.Tensor) else type(got).__name__
    pytest.fail(f"mismatched shapes ({what}): logits (12, {VOCAB}) with targets {targets_shape} and "
                f"reference {reference_shape} must raise a ValueError, not return {got}", pytrace=False)
