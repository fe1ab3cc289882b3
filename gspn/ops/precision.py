"""The dtype policy of the op, in one place: float16 and bfloat16 are computed in float32 (so every
backend accumulates in at least float32), other dtypes as they are; results go back to the callers' dtypes."""

import torch

LOW_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a computation on `dtype` inputs runs in: float32 for float16/bfloat16, else `dtype` itself."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def in_compute_dtype(fn, *tensors, cast_back=None):
    """fn(*tensors) with every tensor (None passes through) in the compute dtype of the first one; each
    result cast back to cast_back[i] (a dtype, or None to keep it as computed), by default to the first
    tensor's dtype. fn returns one tensor or a tuple of them, and so does this."""
    dtype = compute_dtype(tensors[0].dtype)
    out = fn(*(t if t is None else t.to(dtype) for t in tensors))
    single = isinstance(out, torch.Tensor)
    results = (out,) if single else tuple(out)
    targets = cast_back if cast_back is not None else (tensors[0].dtype,) * len(results)
    results = tuple(r if d is None else r.to(d) for r, d in zip(results, targets, strict=True))
    return results[0] if single else results
