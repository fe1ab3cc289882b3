"""ONNX translations of gspn's custom ops, for torch.onnx's dynamo exporter (docs/weights.md, "Deploy").

`custom_translation_table()` maps the ops `gspn::propagate` and `gspn::mixer_propagate` to functions
that build them from standard ONNX operators (opset 18); `export` is `torch.onnx.export(dynamo=True)`
with that table. Each direction's line scan (docs/design.md §1.1) is one ONNX Scan with a step per line
along the scan axis, reading every tensor in the input's frame (the Scan's axes and directions do the
indexing), so H and W stay dynamic in the graph. The rest of the mixer op (normalisation §1.2, chunks
§1.3, gates, skip, merge) follows gspn/ops/mixer_reference.py, its definition.
"""

from __future__ import annotations

import torch
from onnxscript import build_graph, ir
from onnxscript import opset18 as op

from .checks import DIRECTIONS
from .mixer_reference import CROSS_DIM
from .reference import REVERSED, SCAN_DIM

OPSET = 18
LOW_PRECISION = (ir.DataType.FLOAT16, ir.DataType.BFLOAT16)


def _compute_dtype(dtype: ir.DataType) -> ir.DataType:
    """gspn/ops/precision.py's policy: float16 and bfloat16 are computed in float32."""
    return ir.DataType.FLOAT if dtype in LOW_PRECISION else dtype


def _cast(t, dtype: ir.DataType):
    return t if t is None or t.dtype == dtype else op.Cast(t, to=dtype)


def _static(value, dim: int, name: str) -> int:
    size = value.shape[dim] if value.shape is not None else None
    if not isinstance(size, int):
        raise ValueError(f"gspn.ops.onnx: dimension {dim} of `{name}` must be static (a number of channels), "
                         f"got {size}")
    return size


def _line_step(dtype: ir.DataType) -> ir.Graph:
    """The Scan body, one line: h = v + a * prev[i-1] + b * prev[i] + c * prev[i+1] (the state is zero
    outside the line), or h = v where `keep` is false (the first step of a chunk restarts the state)."""
    def step(op, prev, v, a, b, c, keep):
        padded = op.Pad(prev, op.Constant(value_ints=[1, 1]), None, op.Constant(value_ints=[-1]))
        lower = op.Slice(padded, op.Constant(value_ints=[0]), op.Constant(value_ints=[-2]),
                         op.Constant(value_ints=[-1]))
        upper = op.Slice(padded, op.Constant(value_ints=[2]), op.Constant(value_ints=[2**62]),
                         op.Constant(value_ints=[-1]))
        h = op.Add(op.Add(op.Add(v, op.Mul(b, prev)), op.Mul(a, lower)), op.Mul(c, upper))
        h = op.Where(keep, h, v)
        return h, op.Identity(h)

    tensor = ir.TensorType(dtype)
    inputs = [ir.Value(name=name, type=tensor) for name in ("prev", "v", "a", "b", "c")]
    inputs.append(ir.Value(name="keep", type=ir.TensorType(ir.DataType.BOOL)))
    outputs = [ir.Value(name=name, type=tensor) for name in ("state", "line")]
    return build_graph(step, inputs, outputs, opset_imports={"": OPSET}, name="gspn_line_step")


class _Scans:
    """What the scans of one op call share: x (B, C, H, W) regrouped as (B, G, K, H, W) for G weight
    groups of K channels, and per scan axis the zero first state and which steps continue a chunk."""

    def __init__(self, x, groups: int, channels: int, chunk: int, dtype: ir.DataType):
        self.image_shape = op.Shape(x)
        grouping = op.Constant(value_ints=[0, groups, channels // groups])  # 0: B as it is
        self.grouped_shape = op.Concat(grouping, op.Shape(x, start=2), axis=0)
        self.chunk, self.dtype, self.starts = chunk, dtype, {}

    def _start(self, v, axis: int):
        """(zero state, keep) of a scan along `axis` of the grouped v; keep[s] is false where step s
        (counted from where the scan begins) starts a chunk."""
        if axis not in self.starts:
            length = op.Shape(v, start=axis, end=axis + 1)
            state_shape = op.Concat(op.Shape(v, start=0, end=axis), op.Shape(v, start=axis + 1), axis=0)
            zero = op.ConstantOfShape(state_shape, value=ir.tensor([0], dtype=self.dtype))
            if self.chunk:
                steps = op.Range(0, op.Squeeze(length), 1)
                keep = op.Not(op.Equal(op.Mod(steps, self.chunk), 0))
            else:
                keep = op.ConstantOfShape(length, value=ir.tensor([True]))
            self.starts[axis] = zero, keep
        return self.starts[axis]

    def propagate(self, x, lam, a, b, c, direction: str):
        """h (B, C, H, W) of one direction, as `propagate` (weights (B, G, H, W) used as given)."""
        v = op.Reshape(op.Mul(lam, x), self.grouped_shape)
        a, b, c = (op.Unsqueeze(t, [2]) for t in (a, b, c))
        axis, backwards = SCAN_DIM[direction] + 1, int(REVERSED[direction])
        zero, keep = self._start(v, axis)
        final = op.Scan(zero, v, a, b, c, keep, body=_line_step(self.dtype), num_scan_inputs=5,
                        scan_input_axes=[axis] * 4 + [0], scan_input_directions=[backwards] * 4 + [0],
                        scan_output_axes=[axis], scan_output_directions=[backwards])
        # torch's recorder gives a node one output per output of the schema, and Scan has one
        # variadic output: add the second, the lines' states, which is the h wanted
        scan = final.producer()
        if len(scan.outputs) < 2:
            scan.resize_outputs(2)
        return op.Reshape(scan.outputs[1], self.image_shape)


def _border_masks(x, cross_dim: int, dtype: ir.DataType):
    """1 where the lower (first mask) or higher (second) neighbour on the cross axis exists, else 0;
    shaped to broadcast against (B, G, H, W)."""
    size = op.Shape(x, start=cross_dim, end=cross_dim + 1)
    index = op.Range(0, op.Squeeze(size), 1)
    if cross_dim == 2:
        index = op.Unsqueeze(index, [1])
    first = op.Greater(index, 0)
    last = op.Less(index, op.Sub(size, 1))
    return op.Cast(first, to=dtype), op.Cast(last, to=dtype)


def _normalize(la, lb, lc, masks):
    """stochastic_normalize: sigmoids, the one pointing outside the map zeroed, divided by their sum."""
    first, last = masks
    sa, sb, sc = op.Mul(op.Sigmoid(la), first), op.Sigmoid(lb), op.Mul(op.Sigmoid(lc), last)
    total = op.Add(op.Add(sa, sb), sc)
    return op.Div(sa, total), op.Div(sb, total), op.Div(sc, total)


def _channels(t, start: int, count: int):
    return op.Slice(t, [start], [start + count], [1])


def propagate_onnx(x, lam, a, b, c, direction: str, chunk: int, backend: str):
    """`gspn::propagate`: the scan of one direction, the weights used as given."""
    out_dtype, dtype = x.dtype, _compute_dtype(x.dtype)
    scans = _Scans(x, _static(a, 1, "a"), _static(x, 1, "x"), chunk, dtype)
    h = scans.propagate(*(_cast(t, dtype) for t in (x, lam, a, b, c)), direction)
    return _cast(h, out_dtype)


def mixer_propagate_onnx(x, params, merge, proj=None, groups: int = 1, chunk: int = 0, skip: bool = True,
                         save_states: bool = False, backend: str = ""):
    """`gspn::mixer_propagate`: (y, states) as gspn/ops/mixer_reference.py's forward computes them."""
    out_dtype, dtype = x.dtype, _compute_dtype(x.dtype)
    rows = _static(params, 1, "params") if proj is None else _static(proj, 0, "proj")
    x, params, merge, proj = (_cast(t, dtype) for t in (x, params, merge, proj))
    full = params if proj is None else op.Einsum(proj, params, equation="qr,brhw->bqhw")
    per, G = rows // len(DIRECTIONS), groups
    C = (per - 3 * G) // (3 if skip else 2)
    scans = _Scans(x, G, C, chunk, dtype)
    masks = {dim: _border_masks(x, dim, dtype) for dim in set(CROSS_DIM.values())}
    y, states = None, []
    for k, direction in enumerate(DIRECTIONS):
        base = k * per
        la, lb, lc = (_channels(full, base + i * G, G) for i in range(3))
        lam, u = _channels(full, base + 3 * G, C), _channels(full, base + 3 * G + C, C)
        wa, wb, wc = _normalize(la, lb, lc, masks[CROSS_DIM[direction]])
        h = scans.propagate(x, lam, wa, wb, wc, direction)
        term = op.Mul(u, h)
        if skip:
            term = op.Add(term, op.Mul(_channels(full, base + 3 * G + 2 * C, C), x))
        term = op.Mul(op.Gather(merge, k), term)
        y = term if y is None else op.Add(y, term)
        states.append(h)
    if save_states:
        states = op.Concat(*(op.Unsqueeze(h, [1]) for h in states), axis=1)
    else:
        states = op.Constant(value=ir.tensor([], dtype=dtype))
    return _cast(y, out_dtype), states


def custom_translation_table() -> dict:
    """{op: translation} for `torch.onnx.export(..., dynamo=True, custom_translation_table=...)`."""
    return {torch.ops.gspn.propagate.default: propagate_onnx,
            torch.ops.gspn.mixer_propagate.default: mixer_propagate_onnx}


def export(model, example_inputs: tuple, path=None, *, dynamic_shapes=None, opset: int | None = None, **options):
    """ONNX of `model` (an nn.Module in eval mode, or a torch.export.ExportedProgram) with gspn's ops.

    The module is first captured with `torch.export.export(model, example_inputs, dynamic_shapes=...)`,
    which raises if the code fixes a dimension marked dynamic (torch.onnx.export alone would quietly
    export it static), then converted by `torch.onnx.export(dynamo=True)` with the table above.
    dynamic_shapes: as torch.export's, e.g. `({0: Dim("batch"), 2: Dim("height", min=33),
    3: Dim("width", min=33)},)` for a backbone. opset: at least 18 (None: torch's default). `options`
    go to torch.onnx.export (external_data, optimize, verify, ...). Returns the ONNXProgram, also
    written to `path` when one is given.
    """
    if opset is not None and opset < OPSET:
        raise ValueError(f"gspn.ops.onnx.export: `opset` must be at least {OPSET}, got {opset}")
    example_inputs = tuple(example_inputs)
    if not isinstance(model, torch.export.ExportedProgram):
        model = torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes)
    return torch.onnx.export(model, example_inputs, path, dynamo=True, dynamic_shapes=dynamic_shapes,
                             opset_version=opset, custom_translation_table=custom_translation_table(), **options)
