"""Loading torchvision-named 2D ResNet weights into C2D and inflating them into I3D."""

from __future__ import annotations

import copy

import pytest
import torch
from rstg_testing import assert_close
from video_testing import TINY, randomise_bn, resnet2d_features, to_2d_state_dict

from rstg_fast.video import VideoClassifier, WeightLoadError, inflate_weight, load_resnet_weights

BLOCKS = (1, 2, 1, 1)  # two blocks in res3: both an inflated and a plain bottleneck conv1


@pytest.fixture
def imagenet_sd():
    """A random 'ImageNet' ResNet state_dict in torchvision's format (4-D convs, 1000-way fc)."""
    torch.manual_seed(0)
    src = VideoClassifier("c2d", 1000, base_width=4, blocks=BLOCKS)
    randomise_bn(src)
    return to_2d_state_dict(src)


def oracle_2d(sd: dict[str, torch.Tensor], img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The independent 2D network's features in float32 (the yardstick) and float64 (the oracle)."""
    sd64 = {k: (v.double() if v.is_floating_point() else v) for k, v in sd.items()}
    return resnet2d_features(sd, img, BLOCKS), resnet2d_features(sd64, img.double(), BLOCKS)


def frames_to_batch(feats: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B * T, C, H, W)."""
    return feats.transpose(1, 2).flatten(0, 1)


def test_c2d_equals_the_2d_network_on_every_frame(imagenet_sd, tmp_path):
    path = tmp_path / "r50.pt"
    torch.save(imagenet_sd, path)
    model = VideoClassifier("c2d", 174, base_width=4, blocks=BLOCKS).eval()
    rep = load_resnet_weights(model, path)
    assert rep.inflated and not [k for k in rep.inflated if model.state_dict()[k].shape[2] != 1]
    assert sorted(rep.skipped) == ["fc.bias", "fc.weight"]  # 1000-way fc vs 174 classes
    img = torch.randn(1, 3, 64, 64)
    clip = img.unsqueeze(2).expand(1, 3, 6, 64, 64)  # constant clip: pool1's temporal max is a no-op
    with torch.no_grad():
        got = model.forward_features(clip)
        want, want64 = oracle_2d(imagenet_sd, img)
    assert got.shape == (1, 128, 3, 2, 2)
    for t in range(3):
        assert_close(got[:, :, t], want64, want, f"c2d frame {t}")


def test_i3d_mean_inflation_on_a_constant_clip_equals_2d(imagenet_sd):
    model = VideoClassifier("i3d", 174, base_width=4, blocks=BLOCKS).eval()
    rep = load_resnet_weights(model, imagenet_sd, inflate="mean")
    assert "conv1.weight" in rep.inflated and "layer1.0.conv1.weight" in rep.inflated
    img = torch.randn(1, 3, 64, 64)
    clip = img.unsqueeze(2).expand(1, 3, 32, 64, 64).contiguous()
    with torch.no_grad():
        got = model.forward_features(clip)  # (1, 128, 16, 2, 2)
        want, want64 = oracle_2d(imagenet_sd, img)
    # zero temporal padding changes the first/last frames; every temporal conv widens that
    # border by one step (conv1 by two input frames), so frames 6..9 of 16 are untouched
    for t in range(6, 10):
        assert_close(got[:, :, t], want64, want, f"i3d frame {t}")
    assert not torch.allclose(got[:, :, 0], want, atol=1e-3)  # the border really differs


def test_i3d_center_inflation_equals_c2d_on_any_clip(imagenet_sd):
    c2d = VideoClassifier("c2d", 1000, base_width=4, blocks=BLOCKS).eval()
    i3d = VideoClassifier("i3d", 1000, base_width=4, blocks=BLOCKS).eval()
    load_resnet_weights(c2d, imagenet_sd)
    load_resnet_weights(i3d, imagenet_sd, inflate="center", load_fc=True)
    clip = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():  # oracle: c2d in float64; c2d's own float32 error is the yardstick
        assert_close(i3d(clip), copy.deepcopy(c2d).double()(clip.double()), c2d(clip), "i3d-center logits")


def test_inflate_weight_modes():
    w = torch.randn(5, 3, 7, 7)
    m = inflate_weight(w, 3, "mean")
    assert m.shape == (5, 3, 3, 7, 7)
    torch.testing.assert_close(m.sum(2), w)
    c = inflate_weight(w, 5, "center")
    torch.testing.assert_close(c[:, :, 2], w)
    assert c[:, :, [0, 1, 3, 4]].abs().sum() == 0
    with pytest.raises(ValueError, match="inflate"):
        inflate_weight(w, 3, "gaussian")


def test_3d_weights_are_copied_and_prefix_stripped():
    src = VideoClassifier("i3d", 10, **TINY)
    randomise_bn(src)
    dst = VideoClassifier("i3d", 10, **TINY)
    rep = load_resnet_weights(dst, {"state_dict": {"module." + k: v for k, v in src.state_dict().items()}})
    assert not rep.inflated and not rep.skipped
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_missing_and_mismatched_keys_give_a_clear_error(imagenet_sd):
    model = VideoClassifier("i3d", 174, base_width=4, blocks=BLOCKS)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = dict(imagenet_sd)
    del bad["layer2.1.conv2.weight"], bad["bn1.running_var"]
    bad["layer1.0.conv3.weight"] = torch.randn(16, 5, 1, 1)
    bad["layer9.0.conv1.weight"] = torch.randn(1)
    with pytest.raises(WeightLoadError) as err:
        load_resnet_weights(model, bad)
    msg = str(err.value)
    assert "2 missing keys" in msg and "layer2.1.conv2.weight" in msg and "bn1.running_var" in msg
    assert "layer1.0.conv3.weight: file (16, 5, 1, 1) vs model (16, 4, 1, 1, 1)" in msg
    assert "unexpected keys" in msg and "layer9.0.conv1.weight" in msg
    for k, v in model.state_dict().items():  # nothing written on failure
        assert torch.equal(v, before[k]), k
    del bad["layer9.0.conv1.weight"]
    with pytest.raises(WeightLoadError, match="fc.weight: file"):
        load_resnet_weights(model, imagenet_sd, load_fc=True)  # demanding a 1000-way fc in a 174-way model


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "x.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightLoadError, match="mapping"):
        load_resnet_weights(VideoClassifier("c2d", 3, **TINY), path)
