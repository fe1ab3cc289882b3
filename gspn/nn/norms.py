"""Normalisation layers on channel-first (B, C, H, W) maps."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of a (B, C, H, W) map."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class GRN(nn.Module):
    """Global Response Normalisation (ConvNeXt V2): rescale channels by their share of the spatial L2 energy.

    Starts as the identity (gamma = beta = 0).
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        energy = torch.linalg.vector_norm(x.float(), dim=(2, 3), keepdim=True)
        share = (energy / (energy.mean(dim=1, keepdim=True) + self.eps)).to(x.dtype)
        gamma, beta = self.gamma.view(1, -1, 1, 1), self.beta.view(1, -1, 1, 1)
        return x + gamma * (x * share) + beta
