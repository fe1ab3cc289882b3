"""An independent oracle for the propagation: the explicit dense matrix of docs/design.md §1.1.

For the left-to-right scan, column j of the hidden state is h_j = T_j h_{j-1} + lam_j x_j with T_j the
tridiagonal matrix (a, b, c of column j on its sub-, main and super-diagonal), and T_j = 0 where a
chunk restarts. Unrolled, h = M (lam x) with block (j, k) of M equal to T_j T_{j-1} ... T_{k+1}.
Other directions transform the inputs, scan left-to-right and transform back, exactly as the API
defines them. Everything is built with differentiable torch ops, so autograd gives oracle gradients.
"""

import torch

from gspn.benchmarks.propagate import FROM_LR, TO_LR  # the API's definition of the directions, as transforms


def _column_matrix(a, b, c):
    """The tridiagonal matrix of one column, from weight vectors of length H."""
    return torch.diag_embed(b) + torch.diag_embed(a[1:], offset=-1) + torch.diag_embed(c[:-1], offset=1)


def dense_matrix(a, b, c, chunk):
    """M of shape (W*H, W*H) for one (H, W) weight plane, indexed (column, row)."""
    H, W = a.shape
    eye = torch.eye(H, dtype=a.dtype)
    blocks = [[torch.zeros(H, H, dtype=a.dtype) for _ in range(W)] for _ in range(W)]
    for k in range(W):
        blocks[k][k] = eye
        for j in range(k + 1, W):
            if chunk and j % chunk == 0:
                break
            blocks[j][k] = _column_matrix(a[:, j], b[:, j], c[:, j]) @ blocks[j - 1][k]
    return torch.cat([torch.cat(row, dim=1) for row in blocks], dim=0)


def dense_propagate(x, lam, a, b, c, direction="lr", chunk=None):
    x, lam, a, b, c = (TO_LR[direction](t) for t in (x, lam, a, b, c))
    B, C, H, W = x.shape
    G = a.shape[1]
    v = lam * x
    out = []
    for n in range(B):
        channels = []
        for ch in range(C):
            g = ch // (C // G)
            M = dense_matrix(a[n, g], b[n, g], c[n, g], chunk)
            column_major = v[n, ch].transpose(0, 1).reshape(-1)
            channels.append((M @ column_major).reshape(W, H).transpose(0, 1))
        out.append(torch.stack(channels))
    return FROM_LR[direction](torch.stack(out))
