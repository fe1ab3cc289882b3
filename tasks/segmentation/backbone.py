"""The GSPN backbone as a dense feature extractor: what mmsegmentation's heads read.

Registered in mmseg's model registry (as "GSPN", by `import_mmseg()`), so an mmseg config can say
    backbone=dict(type="GSPN", arch="gspn_t", out_indices=(0, 1, 2, 3), drop_path_rate=0.2)
"""

from collections.abc import Sequence

from torch import Tensor, nn

from gspn.dotted import import_object
from gspn.errors import ConfigError
from gspn.models import create_model, list_models, load_checkpoint


def build_network(arch: str, overrides: dict) -> nn.Module:
    """A preset of gspn.models by name (with its stage output norms), or any class with the backbone API
    by dotted path (built with `overrides` only)."""
    if arch in list_models():
        return create_model(arch, "backbone", num_classes=0, stage_norms=True, **overrides)
    network_class = import_object(arch)
    if network_class is None:
        raise ConfigError(f"backbone: {arch!r} is neither a preset ({', '.join(list_models(family='backbone'))}) nor an importable "
                          "class path such as mypackage.MyBackbone")
    return network_class(**overrides)


class GSPNSegBackbone(nn.Module):
    """Stage outputs of a GSPN backbone (strides 4, 8, 16, 32), each through its stage norm.

    arch: a preset name (gspn_t, gspn2_t, ...) or a class path of a network with
        `forward_intermediates` and `feature_info`. out_indices: the stages returned.
    pretrained: a classification checkpoint (its state_dict: the EMA weights when the run kept an
        EMA); keys that do not fit are reported. **overrides: the preset's arguments (drop_path_rate, ...).
    """

    registry_name = "GSPN"

    def __init__(self, arch: str = "gspn_t", out_indices: Sequence[int] = (0, 1, 2, 3), pretrained: str | None = None,
                 **overrides):
        super().__init__()
        self.network = build_network(arch, overrides)
        if not hasattr(self.network, "forward_intermediates"):
            raise ConfigError(f"backbone: {arch!r} has no forward_intermediates(x, indices, norm, intermediates_only)")
        if hasattr(self.network, "head"):
            self.network.head = nn.Identity()  # the classifier's pooling norm is never used by dense heads
        self.out_indices = tuple(out_indices)
        self.channels = [self.network.feature_info[i]["num_chs"] for i in self.out_indices]
        self.load_report = load_checkpoint(self.network, pretrained) if pretrained else None

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.network.forward_intermediates(images, indices=self.out_indices, norm=True,
                                                        intermediates_only=True))
