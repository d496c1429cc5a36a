"""Tests for smoothing.py: token-specific label smoothing and its special cases."""

import numpy as np
import torch
import torch.nn.functional as F

from masking import IGNORE_INDEX
from smoothing import cross_entropy, token_specific_label_smoothing, uniform_label_smoothing


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_tls_matches_hand_computation():
    # 3 masked tokens, vocabulary of 4.
    logits = np.array([[2.0, 0.5, -1.0, 0.0],
                       [0.1, 0.2, 0.3, 0.4],
                       [-2.0, 1.0, 3.0, 0.5]])
    targets = np.array([0, 3, 1])
    reference = np.array([[1.0, 1.0, 0.0, -1.0],
                          [0.0, 0.0, 0.0, 2.0],
                          [0.5, -0.5, 2.5, 0.0]])
    alpha = 0.1
    expected = 0.0
    for z, t, ref in zip(logits, targets, reference):
        p = np.exp(z) / np.exp(z).sum()
        r = np.exp(ref) / np.exp(ref).sum()
        target = alpha * r
        target[t] += 1 - alpha
        expected += -(target * np.log(p)).sum()
    expected /= 3
    logits, targets, reference = map(torch.tensor, (logits, targets, reference))
    got = token_specific_label_smoothing(logits, targets, reference, alpha)
    assert abs(got.item() - expected) < 1e-10
    # Log-probabilities as reference give the same r.
    got_log = token_specific_label_smoothing(logits, targets, reference.log_softmax(-1), alpha)
    assert abs(got_log.item() - expected) < 1e-10


def test_tls_special_cases():
    logits = torch.randn(20, 30, generator=gen(0))
    targets = torch.randint(30, (20,), generator=gen(1))
    reference = torch.randn(20, 30, generator=gen(2))
    ce = F.cross_entropy(logits, targets)
    torch.testing.assert_close(token_specific_label_smoothing(logits, targets, reference, 0.0), ce)
    torch.testing.assert_close(cross_entropy(logits, targets), ce)
    uniform = token_specific_label_smoothing(logits, targets, torch.zeros(20, 30), 0.1)
    torch.testing.assert_close(uniform, uniform_label_smoothing(logits, targets, 0.1))
    torch.testing.assert_close(uniform_label_smoothing(logits, targets, 0.1),
                               F.cross_entropy(logits, targets, label_smoothing=0.1))
    # A peaked reference that disagrees with the target must change the loss.
    assert token_specific_label_smoothing(logits, targets, 10 * reference, 0.1) > uniform + 1e-3


def test_tls_gradcheck_and_no_gradient_into_reference():
    logits = torch.randn(5, 7, dtype=torch.float64, generator=gen(3), requires_grad=True)
    targets = torch.tensor([0, 6, IGNORE_INDEX, 2, 3])
    reference = torch.randn(5, 7, dtype=torch.float64, generator=gen(4), requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda z: token_specific_label_smoothing(z, targets, reference, 0.1), (logits,))
    token_specific_label_smoothing(logits, targets, reference, 0.1).backward()
    assert reference.grad is None
    assert logits.grad is not None and logits.grad[2].abs().sum() == 0  # ignored row


def test_float32_result_under_bfloat16_inputs():
    logits = torch.randn(6, 40, generator=gen(5)).bfloat16()
    reference = torch.randn(6, 40, generator=gen(6)).bfloat16()
    targets = torch.randint(40, (6,), generator=gen(7))
    got = token_specific_label_smoothing(logits, targets, reference, 0.1)
    assert got.dtype == torch.float32
    expected = token_specific_label_smoothing(logits.float(), targets, reference.float(), 0.1)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert uniform_label_smoothing(logits, targets).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert token_specific_label_smoothing(logits, targets, reference).dtype == torch.float32


def test_ignore_index_rows_are_excluded_and_empty_gives_zero_with_grad():
    logits = torch.randn(8, 12, generator=gen(8))
    reference = torch.randn(8, 12, generator=gen(9))
    targets = torch.randint(12, (8,), generator=gen(10))
    padded = targets.clone()
    padded[[1, 4, 5]] = IGNORE_INDEX
    keep = padded != IGNORE_INDEX
    tls = token_specific_label_smoothing
    torch.testing.assert_close(tls(logits, padded, reference),
                               tls(logits[keep], targets[keep], reference[keep]))
    torch.testing.assert_close(uniform_label_smoothing(logits, padded),
                               uniform_label_smoothing(logits[keep], targets[keep]))
    torch.testing.assert_close(cross_entropy(logits, padded), F.cross_entropy(logits, padded))
    empty = torch.zeros(0, 12, requires_grad=True)
    zero = tls(empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, 12))
    assert zero.item() == 0.0 and zero.requires_grad
    zero.backward()
    all_ignored = torch.full((8,), IGNORE_INDEX)
    assert cross_entropy(logits, all_ignored).item() == 0.0
