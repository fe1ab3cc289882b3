"""Pure-PyTorch propagation: the definition in code (docs/design.md §1.1, 1.5) and the oracle for kernels.

Every tensor is first laid out scan-major, (L, B, G, K, N): L steps along the scan axis, N positions
on the cross axis, channels split into G weight groups of K channels (weights have K = 1 and
broadcast). The loop runs over L only; everything else is vectorised.
"""

import torch

SCAN_DIM = {"lr": 3, "rl": 3, "tb": 2, "bt": 2}
REVERSED = {"lr": False, "rl": True, "tb": False, "bt": True}


def _scan_major(t: torch.Tensor, direction: str, groups: int) -> torch.Tensor:
    B, C, H, W = t.shape
    if SCAN_DIM[direction] == 3:
        t = t.permute(3, 0, 1, 2)  # (W, B, C, H): rows are the cross axis
    else:
        t = t.permute(2, 0, 1, 3)  # (H, B, C, W): columns are the cross axis
    L, N = t.shape[0], t.shape[3]
    return t.contiguous().view(L, B, groups, C // groups, N)


def _image_major(t: torch.Tensor, direction: str) -> torch.Tensor:
    L, B, G, K, N = t.shape
    t = t.reshape(L, B, G * K, N)
    perm = (1, 2, 3, 0) if SCAN_DIM[direction] == 3 else (1, 2, 0, 3)
    return t.permute(perm).contiguous()


def _steps(L: int, direction: str) -> list[int]:
    return list(range(L - 1, -1, -1)) if REVERSED[direction] else list(range(L))


def _restarts(step: int, chunk: int) -> bool:
    return chunk > 0 and step % chunk == 0


def forward(x, lam, a, b, c, direction: str, chunk: int) -> torch.Tensor:
    """h for one direction; `chunk` 0 means global."""
    G = a.shape[1]
    v = _scan_major(lam * x, direction, G)
    a, b, c = (_scan_major(t, direction, G) for t in (a, b, c))
    h = torch.empty_like(v)
    prev = None
    for step, j in enumerate(_steps(v.shape[0], direction)):
        if step == 0 or _restarts(step, chunk):
            h[j] = v[j]
        else:
            h[j] = torch.addcmul(v[j], b[j], prev)
            h[j, ..., 1:].addcmul_(a[j, ..., 1:], prev[..., :-1])
            h[j, ..., :-1].addcmul_(c[j, ..., :-1], prev[..., 1:])
        prev = h[j]
    return _image_major(h, direction)


def _previous_states(h: torch.Tensor, direction: str, chunk: int) -> torch.Tensor:
    """prev[j] = the state the step at j reads (zero at the scan start and at chunk restarts)."""
    steps = _steps(h.shape[0], direction)
    prev = torch.zeros_like(h)
    for step in range(1, len(steps)):
        if not _restarts(step, chunk):
            prev[steps[step]] = h[steps[step - 1]]
    return prev


def backward(dh, x, lam, a, b, c, h, direction: str, chunk: int):
    """Gradients (dx, dlam, da, db, dc) from dL/dh and the saved forward state h."""
    G = a.shape[1]
    g = _scan_major(dh, direction, G)
    a_s, b_s, c_s = (_scan_major(t, direction, G) for t in (a, b, c))
    steps = _steps(g.shape[0], direction)
    dstate = torch.empty_like(g)
    nxt = None  # (index, dstate) of the step after the current one, when it reads the current one
    for step in range(len(steps) - 1, -1, -1):
        j = steps[step]
        d = g[j].clone()
        if nxt is not None:
            jn, dn = nxt
            d.addcmul_(b_s[jn], dn)
            d[..., :-1].addcmul_(a_s[jn, ..., 1:], dn[..., 1:])
            d[..., 1:].addcmul_(c_s[jn, ..., :-1], dn[..., :-1])
        dstate[j] = d
        nxt = None if _restarts(step, chunk) else (j, d)
    prev = _previous_states(_scan_major(h, direction, G), direction, chunk)
    da = torch.zeros_like(a_s)
    dc = torch.zeros_like(c_s)
    da[..., 1:] = (dstate[..., 1:] * prev[..., :-1]).sum(3, keepdim=True)
    db = (dstate * prev).sum(3, keepdim=True)
    dc[..., :-1] = (dstate[..., :-1] * prev[..., 1:]).sum(3, keepdim=True)
    dstate = _image_major(dstate, direction)
    da, db, dc = (_image_major(t, direction) for t in (da, db, dc))
    return lam * dstate, x * dstate, da, db, dc
