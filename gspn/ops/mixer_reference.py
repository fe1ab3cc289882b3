"""The fused mixer propagation composed from single-direction scans: its definition in code.

`forward` and `backward` take any propagate backend module (reference_backend, cuda, cpu) and run
the four directions one after the other with that module's scan, the Stability-Context
normalisation, the gating, the skip and the merge in plain PyTorch. With the reference backend this
is the oracle of the fused kernels; on CUDA it is the fused op until a fused CUDA kernel exists.

The parameter layout (docs/design.md §1.3, 1.4; docs/mixer.md): per direction k in DIRECTIONS order, the
projection writes Q = 3G + (3 if skip else 2) * C channels

    a~ (G) | b~ (G) | c~ (G) | lam (C) | u (C) | d (C, only with the skip)

so `params` is (B, 4 * Q, H, W). With `proj` given, `params` is instead the low-rank proxy z of shape
(B, R, H, W) and the layout above is `proj @ z` per pixel (proj: (4 * Q, R)), never kept.

    y = sum_k merge[k] * (u_k * h_k + d_k * x),   h_k = the scan of direction k with lam_k and the
                                                  normalised weights of a~_k, b~_k, c~_k
"""

import torch
from torch import Tensor

from .reference_backend import LOW_PRECISION

DIRECTIONS = ("lr", "rl", "tb", "bt")
CROSS_DIM = {"lr": 2, "rl": 2, "tb": 3, "bt": 3}  # of a (B, G, H, W) map: rows are the cross axis of "lr"


def channels_per_direction(channels: int, groups: int, skip: bool) -> int:
    return 3 * groups + (3 if skip else 2) * channels


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Everything runs in float32 at least: low-precision inputs are upcast, float64 stays."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def project(params: Tensor, proj: Tensor | None, dtype: torch.dtype) -> Tensor:
    """The full parameter map (B, 4 * Q, H, W) in `dtype`: params itself, or proj applied to the proxy."""
    if proj is None:
        return params.to(dtype)
    return torch.einsum("qr,brhw->bqhw", proj.to(dtype), params.to(dtype))


def split(full: Tensor, k: int, channels: int, groups: int):
    """Views a~, b~, c~ (B, G, H, W) and lam, u, d (B, C, H, W; d None without skip) of direction k."""
    B, _, H, W = full.shape
    per = full.view(B, len(DIRECTIONS), -1, H, W)[:, k]
    G, C = groups, channels
    d = per[:, 3 * G + 2 * C:3 * G + 3 * C] if per.shape[1] == 3 * G + 3 * C else None
    return per[:, :G], per[:, G:2 * G], per[:, 2 * G:3 * G], per[:, 3 * G:3 * G + C], per[:, 3 * G + C:3 * G + 2 * C], d


def _border_masks(la: Tensor, cross_dim: int) -> tuple[Tensor, Tensor]:
    n = la.shape[cross_dim]
    index = torch.arange(n, device=la.device).view([n if i == cross_dim else 1 for i in range(la.dim())])
    return (index > 0).to(la.dtype), (index < n - 1).to(la.dtype)


def normalize(la: Tensor, lb: Tensor, lc: Tensor, cross_dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """docs/design.md §1.2: sigmoid, the outside term left out at both ends of the cross axis, divided by the sum."""
    first, last = _border_masks(la, cross_dim)
    sa, sb, sc = torch.sigmoid(la) * first, torch.sigmoid(lb), torch.sigmoid(lc) * last
    total = sa + sb + sc
    return (sa / total).contiguous(), (sb / total).contiguous(), (sc / total).contiguous()


def normalize_backward(da: Tensor, db: Tensor, dc: Tensor, la: Tensor, lb: Tensor, lc: Tensor,
                       cross_dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of the logits from those of the normalised weights (w_i = s_i / S):
    dS_i = (dw_i - sum_j dw_j w_j) / S, and d logit_i = dS_i * s'(logit_i), zero where masked."""
    first, last = _border_masks(la, cross_dim)
    ga, gb, gc = torch.sigmoid(la), torch.sigmoid(lb), torch.sigmoid(lc)
    sa, sb, sc = ga * first, gb, gc * last
    total = sa + sb + sc
    mean = (da * sa + db * sb + dc * sc) / total
    return ((da - mean) / total * ga * (1 - ga) * first, (db - mean) / total * gb * (1 - gb),
            (dc - mean) / total * gc * (1 - gc) * last)


def forward(module, x: Tensor, params: Tensor, merge: Tensor, proj: Tensor | None, groups: int, chunk: int,
            skip: bool, save_states: bool) -> tuple[Tensor, Tensor]:
    """(y, states): y of x's shape and dtype; states (B, 4, C, H, W) of the hidden states when saved."""
    dtype = compute_dtype(x.dtype)
    B, C, H, W = x.shape
    xc, m = x.to(dtype), merge.to(dtype)
    full = project(params, proj, dtype)
    y = torch.zeros(B, C, H, W, dtype=dtype, device=x.device)
    states = []
    for k, direction in enumerate(DIRECTIONS):
        la, lb, lc, lam, u, d = split(full, k, C, groups)
        wa, wb, wc = normalize(la, lb, lc, CROSS_DIM[direction])
        h = module.forward(xc, lam.contiguous(), wa, wb, wc, direction, chunk)
        y += m[k] * (u * h + d * xc) if skip else m[k] * (u * h)
        if save_states:
            states.append(h)
    saved = torch.stack(states, 1) if save_states else x.new_empty(0, dtype=dtype)
    return y.to(x.dtype), saved


def backward(module, gy: Tensor, x: Tensor, params: Tensor, merge: Tensor, proj: Tensor | None, states: Tensor,
             groups: int, chunk: int, skip: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dx, dparams, dmerge, dproj): dparams in the layout of `params` (of z when proj is given);
    dproj is empty without proj. The hidden states are recomputed unless `states` holds them."""
    dtype = compute_dtype(x.dtype)
    B, C, H, W = x.shape
    xc, m, g = x.to(dtype), merge.to(dtype), gy.to(dtype)
    full = project(params, proj, dtype)
    dfull = torch.empty_like(full)
    dx = torch.zeros_like(xc)
    dmerge = torch.empty(len(DIRECTIONS), dtype=dtype, device=x.device)
    for k, direction in enumerate(DIRECTIONS):
        la, lb, lc, lam, u, d = split(full, k, C, groups)
        dla, dlb, dlc, dlam, du, dd = split(dfull, k, C, groups)
        cross = CROSS_DIM[direction]
        wa, wb, wc = normalize(la, lb, lc, cross)
        lam = lam.contiguous()
        h = states[:, k] if states.numel() else module.forward(xc, lam, wa, wb, wc, direction, chunk)
        dh = (m[k] * g * u).contiguous()
        dxk, dlam_k, dwa, dwb, dwc = module.backward(dh, xc, lam, wa, wb, wc, h.contiguous(), direction, chunk)
        for out, grad in zip((dla, dlb, dlc), normalize_backward(dwa, dwb, dwc, la, lb, lc, cross)):
            out.copy_(grad)
        dlam.copy_(dlam_k)
        du.copy_(m[k] * g * h)
        dx += dxk
        if skip:
            dd.copy_(m[k] * g * xc)
            dx += m[k] * d * g
            dmerge[k] = (g * (u * h + d * xc)).sum()
        else:
            dmerge[k] = (g * u * h).sum()
    if proj is None:
        return dx.to(x.dtype), dfull.to(params.dtype), dmerge.to(merge.dtype), params.new_empty(0)
    dz = torch.einsum("qr,bqhw->brhw", proj.to(dtype), dfull)
    dproj = torch.einsum("bqhw,brhw->qr", dfull, params.to(dtype))
    return dx.to(x.dtype), dz.to(params.dtype), dmerge.to(merge.dtype), dproj.to(proj.dtype)
