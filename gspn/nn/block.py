"""A pre-norm GSPN block: [local perception unit] -> mixer -> MLP, residuals with stochastic depth."""

from torch import Tensor, nn

from .drop_path import DropPath
from .mixer import GSPNMixer
from .mlp import Mlp
from .norms import LayerNorm2d


class GSPNBlock(nn.Module):
    """`lpu` adds GSPN-2's local perception unit (a depthwise 3x3 conv residual) in front.

    Mixer options (chunk, ratio, d_state, compact, proxy_channels, kernel_size) pass through `mixer`.
    """

    def __init__(self, dim: int, *, mlp_ratio: float = 4.0, drop_path: float = 0.0, lpu: bool = False, **mixer):
        super().__init__()
        self.lpu = nn.Conv2d(dim, dim, 3, padding=1, groups=dim) if lpu else None
        self.norm1 = LayerNorm2d(dim)
        self.mixer = GSPNMixer(dim, **mixer)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        if self.lpu is not None:
            x = x + self.lpu(x)
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))
