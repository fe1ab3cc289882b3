"""The fused mixer propagation composed from single-direction scans: its definition in code.

`forward` and `backward` take any propagate backend module (reference_backend, cuda, cpu) and run
the four directions one after the other with that module's scan, the Stability-Context
normalisation (gspn/ops/normalize.py), the gating, the skip and the merge in plain PyTorch, in the
compute dtype (gspn/ops/precision.py). With the reference backend this is the oracle of the fused
kernels; on CUDA it is the fused op until a fused CUDA kernel exists.

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

from .checks import DIRECTIONS
from .normalize import stochastic_normalize, stochastic_normalize_backward
from .precision import in_compute_dtype

CROSS_DIM = {"lr": 2, "rl": 2, "tb": 3, "bt": 3}  # of a (B, G, H, W) map: rows are the cross axis of "lr"


def channels_per_direction(channels: int, groups: int, skip: bool) -> int:
    return 3 * groups + (3 if skip else 2) * channels


def project(params: Tensor, proj: Tensor | None) -> Tensor:
    """The full parameter map (B, 4 * Q, H, W): params itself, or proj applied to the proxy."""
    if proj is None:
        return params
    return torch.einsum("qr,brhw->bqhw", proj, params)


def split(full: Tensor, k: int, channels: int, groups: int):
    """Views a~, b~, c~ (B, G, H, W) and lam, u, d (B, C, H, W; d None without skip) of direction k."""
    B, _, H, W = full.shape
    per = full.view(B, len(DIRECTIONS), -1, H, W)[:, k]
    G, C = groups, channels
    d = per[:, 3 * G + 2 * C:3 * G + 3 * C] if per.shape[1] == 3 * G + 3 * C else None
    return per[:, :G], per[:, G:2 * G], per[:, 2 * G:3 * G], per[:, 3 * G:3 * G + C], per[:, 3 * G + C:3 * G + 2 * C], d


def forward(module, x: Tensor, params: Tensor, merge: Tensor, proj: Tensor | None, groups: int, chunk: int,
            skip: bool, save_states: bool) -> tuple[Tensor, Tensor]:
    """(y, states): y of x's shape and dtype; states (B, 4, C, H, W) of the hidden states when saved."""
    def run(x, params, merge, proj):
        B, C, H, W = x.shape
        full = project(params, proj)
        y = torch.zeros_like(x)
        states = []
        for k, direction in enumerate(DIRECTIONS):
            la, lb, lc, lam, u, d = split(full, k, C, groups)
            wa, wb, wc = stochastic_normalize(la, lb, lc, CROSS_DIM[direction])
            h = module.forward(x, lam.contiguous(), wa, wb, wc, direction, chunk)
            y += merge[k] * (u * h + d * x) if skip else merge[k] * (u * h)
            if save_states:
                states.append(h)
        return y, torch.stack(states, 1) if save_states else x.new_empty(0)

    return in_compute_dtype(run, x, params, merge, proj, cast_back=(x.dtype, None))


def backward(module, gy: Tensor, x: Tensor, params: Tensor, merge: Tensor, proj: Tensor | None, states: Tensor,
             groups: int, chunk: int, skip: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dx, dparams, dmerge, dproj): dparams in the layout of `params` (of z when proj is given);
    dproj is empty without proj. The hidden states are recomputed unless `states` holds them."""
    def run(x, gy, params, merge, proj):
        B, C, H, W = x.shape
        full = project(params, proj)
        dfull = torch.empty_like(full)
        dx = torch.zeros_like(x)
        dmerge = torch.empty(len(DIRECTIONS), dtype=x.dtype, device=x.device)
        for k, direction in enumerate(DIRECTIONS):
            la, lb, lc, lam, u, d = split(full, k, C, groups)
            dla, dlb, dlc, dlam, du, dd = split(dfull, k, C, groups)
            cross = CROSS_DIM[direction]
            wa, wb, wc = stochastic_normalize(la, lb, lc, cross)
            lam = lam.contiguous()
            h = states[:, k] if states.numel() else module.forward(x, lam, wa, wb, wc, direction, chunk)
            dh = (merge[k] * gy * u).contiguous()
            dxk, dlam_k, dwa, dwb, dwc = module.backward(dh, x, lam, wa, wb, wc, h.contiguous(), direction, chunk)
            for out, grad in zip((dla, dlb, dlc), stochastic_normalize_backward(dwa, dwb, dwc, la, lb, lc, cross)):
                out.copy_(grad)
            dlam.copy_(dlam_k)
            du.copy_(merge[k] * gy * h)
            dx += dxk
            if skip:
                dd.copy_(merge[k] * gy * x)
                dx += merge[k] * d * gy
                dmerge[k] = (gy * (u * h + d * x)).sum()
            else:
                dmerge[k] = (gy * u * h).sum()
        if proj is None:
            return dx, dfull, dmerge, x.new_empty(0)
        return (dx, torch.einsum("qr,bqhw->brhw", proj, dfull), dmerge,
                torch.einsum("bqhw,brhw->qr", dfull, params))

    return in_compute_dtype(run, x, gy, params, merge, proj,
                            cast_back=(x.dtype, params.dtype, merge.dtype, (params if proj is None else proj).dtype))
