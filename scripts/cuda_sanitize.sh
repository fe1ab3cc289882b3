#!/usr/bin/env bash
# compute-sanitizer on a small forward + backward of the CUDA kernels (run on a GPU machine).
#
#   scripts/cuda_sanitize.sh            # memcheck, racecheck, synccheck, initcheck
#   TOOLS="racecheck" scripts/cuda_sanitize.sh
#   SANITIZER_ARGS="--kernel-name kns=gspn_cuda" scripts/cuda_sanitize.sh   # only our kernels
#
# The cases cover every direction, chunks with W % chunk != 0, G in {1, middle, C}, more channels per
# group than one block takes (the workspace reduction), a cross axis longer than a block, warp mode
# (cross axis <= 64: shuffles) and block mode with several warps per line, 16-bit inputs copied in
# pairs (even W) and one at a time (odd W), and every dtype. Exits non-zero on the first tool that reports an error.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
SANITIZER=${SANITIZER:-compute-sanitizer}
TOOLS=${TOOLS:-memcheck racecheck synccheck initcheck}
command -v "$SANITIZER" >/dev/null || { echo "$SANITIZER not found; set SANITIZER=/path/to/compute-sanitizer" >&2; exit 2; }

CASE='
import torch
from gspn.ops import propagate
from gspn.ops import cuda as backend
reason = backend.unavailable_reason(torch.device("cuda"))
assert reason is None, reason
shapes = [(1, 4, 2, 5, 7, 3), (1, 40, 1, 3, 6, None), (1, 2, 2, 3, 530, 7), (1, 3, 3, 1, 2, 1),
          (1, 3, 1, 70, 66, 5), (2, 20, 1, 33, 12, None)]
for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
    for B, C, G, H, W, chunk in shapes:
        for direction in ("lr", "rl", "tb", "bt"):
            x, lam = (torch.randn(B, C, H, W, device="cuda", dtype=dtype, requires_grad=True) for _ in range(2))
            a, b, c = (torch.rand(B, G, H, W, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
            h = propagate(x, lam, a, b, c, direction=direction, chunk=chunk, backend="cuda")
            h.backward(torch.randn_like(h))
torch.cuda.synchronize()
print("sanitizer case done")
'

"$PYTHON" -c "$CASE"  # builds the extension outside the sanitizer
for tool in $TOOLS; do
  echo "== compute-sanitizer --tool $tool"
  "$SANITIZER" --tool "$tool" --error-exitcode 1 ${SANITIZER_ARGS:-} "$PYTHON" -c "$CASE"
done
echo "compute-sanitizer: $TOOLS clean"
