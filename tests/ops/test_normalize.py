"""The stochastic normalisation of the weights (docs/design.md §1.2)."""

import pytest
import torch

from gspn.ops import stochastic_normalize


@pytest.mark.parametrize("cross_dim", [2, 3, -1, -2])
def test_rows_sum_to_one_and_outside_weights_are_zero(cross_dim):
    logits = [torch.randn(2, 3, 5, 7) * 3 for _ in range(3)]
    a, b, c = stochastic_normalize(*logits, cross_dim=cross_dim)
    torch.testing.assert_close(a + b + c, torch.ones_like(a))
    assert (a >= 0).all() and (b > 0).all() and (c >= 0).all()
    assert (a.select(cross_dim, 0) == 0).all(), "the first position has no lower neighbour"
    assert (c.select(cross_dim, -1) == 0).all(), "the last position has no higher neighbour"
    assert (a.narrow(cross_dim, 1, a.shape[cross_dim] - 1) > 0).all()
    assert (c.narrow(cross_dim, 0, c.shape[cross_dim] - 1) > 0).all()


def test_interior_is_sigmoid_over_the_sum_and_borders_drop_the_outside_term():
    la, lb, lc = (torch.randn(1, 1, 4, 1) for _ in range(3))
    a, b, c = stochastic_normalize(la, lb, lc, cross_dim=2)
    sa, sb, sc = la.sigmoid(), lb.sigmoid(), lc.sigmoid()
    torch.testing.assert_close(b[0, 0, 1:3], (sb / (sa + sb + sc))[0, 0, 1:3])
    torch.testing.assert_close(b[0, 0, 0], (sb / (sb + sc))[0, 0, 0])
    torch.testing.assert_close(b[0, 0, 3], (sb / (sa + sb))[0, 0, 3])


def test_a_line_of_one_keeps_only_the_middle_weight():
    a, b, c = stochastic_normalize(*(torch.randn(1, 2, 1, 3) for _ in range(3)), cross_dim=2)
    assert (a == 0).all() and (c == 0).all()
    torch.testing.assert_close(b, torch.ones_like(b))


@pytest.mark.parametrize("dtype,computed", [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                                            (torch.float64, torch.float64)])
def test_low_precision_logits_give_float32_weights(dtype, computed):
    a, b, c = stochastic_normalize(*(torch.randn(1, 1, 3, 3, dtype=dtype) for _ in range(3)), cross_dim=3)
    assert a.dtype == b.dtype == c.dtype == computed
