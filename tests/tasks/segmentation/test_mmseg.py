"""mmsegmentation stays inside the task; the mmcv._ext stand-in; the backbone in mmseg's registry."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gspn.errors import CheckpointError
from gspn.tasks.segmentation import import_mmseg
from gspn.tasks.segmentation.mmseg_setup import MissingCompiledOp, install_ext_stand_in

from .conftest import tiny_task

REPO = Path(__file__).resolve().parents[3]


def test_gspn_and_every_task_import_without_mmseg():
    code = ("import sys, gspn, gspn.cli, gspn.tasks.segmentation\n"
            "from gspn.cli import import_tasks\n"
            "import_tasks()\n"
            "from gspn.tasks.classification import ClassificationTask\n"
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('mmseg', 'mmcv', 'mmengine')]\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=300)


def test_stand_in_only_replaces_a_missing_compiled_module_and_refuses_to_run():
    import_mmseg()
    ext = sys.modules["mmcv._ext"]
    assert install_ext_stand_in() is False  # already present: never replaced
    assert sys.modules["mmcv._ext"] is ext
    if getattr(ext, "__file__", None) is None:  # the stand-in (mmcv-lite): its ops refuse clearly
        with pytest.raises(MissingCompiledOp, match="nms.*mmcv-lite"):
            ext.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)


def test_an_mmseg_config_builds_uper_net_on_the_registered_backbone():
    from mmengine.config import ConfigDict
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    registry = import_mmseg()
    norm = dict(type="BN", requires_grad=True)
    config = ConfigDict(
        type="EncoderDecoder",
        backbone=dict(type="GSPN", arch="gspn_nano", out_indices=(0, 1, 2, 3), dims=8, depths=(1, 1, 1, 1),
                      d_state=2, drop_path_rate=0.1),
        decode_head=dict(type="UPerHead", in_channels=[8, 16, 32, 64], in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                         channels=16, dropout_ratio=0.1, num_classes=3, norm_cfg=norm, align_corners=False,
                         loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)),
        auxiliary_head=dict(type="FCNHead", in_channels=32, in_index=2, channels=8, num_convs=1, concat_input=False,
                            num_classes=3, norm_cfg=norm, align_corners=False,
                            loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4)),
        test_cfg=dict(mode="slide", crop_size=(32, 32), stride=(24, 24)))
    model = registry.build(config)
    images = torch.randn(2, 3, 40, 56)
    samples = [SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 3, (1, 40, 56))),
                             metainfo=dict(img_shape=(40, 56), pad_shape=(40, 56), ori_shape=(40, 56)))
               for _ in range(2)]
    losses = model.loss(images, samples)
    assert {"decode.loss_ce", "aux.loss_ce"} <= set(losses)
    sum(v for k, v in losses.items() if "loss" in k).backward()
    assert all(p.grad is not None for p in model.backbone.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        results = model.predict(images, samples)
    assert results[0].pred_sem_seg.data.shape == (1, 40, 56)
    by_path = registry.build(dict(type="gspn.tasks.segmentation.GSPNSegBackbone", arch="gspn_nano", dims=8,
                                  depths=(1, 1, 1, 1), d_state=2))
    assert [f.shape[1] for f in by_path(images)] == [8, 16, 32, 64]


def test_unknown_backbone_is_a_clear_error():
    from gspn.tasks.segmentation import GSPNSegBackbone

    with pytest.raises(ValueError, match="gspn_tiny.*neither a preset"):
        GSPNSegBackbone("gspn_tiny")


def test_pretrained_classification_checkpoint_is_loaded_and_reported(tmp_path):
    from gspn.models import create_model
    from gspn.tasks.segmentation import GSPNSegBackbone

    classifier = create_model("gspn_nano", num_classes=7, dims=8, depths=(1, 1, 1, 1), d_state=2)
    torch.save({"state_dict": {f"model.{k}": v for k, v in classifier.state_dict().items()}}, tmp_path / "cls.ckpt")
    backbone = GSPNSegBackbone("gspn_nano", pretrained=str(tmp_path / "cls.ckpt"), dims=8, depths=(1, 1, 1, 1),
                               d_state=2)
    report = backbone.load_report
    assert report.prefix == "model." and not report.mismatched
    assert report.missing and all(key.startswith("stage_norms.") for key in report.missing)  # new for dense heads
    assert report.unexpected and all(key.startswith("model.head.") for key in report.unexpected)
    loaded = backbone.network.state_dict()
    for key, value in classifier.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(value, loaded[key]), key


def test_pretrained_weights_of_another_architecture_are_an_error(tmp_path):
    from gspn.models import create_model

    denoiser = create_model("gspn_denoiser_nano4", num_classes=5, hidden=16, depth=2, d_state=2, mlp_ratio=1.0)
    torch.save(denoiser.state_dict(), tmp_path / "denoiser.pt")
    with pytest.raises(CheckpointError, match="denoiser.pt: no tensor matches the model"):
        tiny_task(pretrained=str(tmp_path / "denoiser.pt"))
