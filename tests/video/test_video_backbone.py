"""C2D / I3D ResNet-50 trunks: stage shapes (the documented table), parameter counts, kernels."""

from __future__ import annotations

import pytest
import torch
from video_testing import TINY

from rstg_fast.video import STAGE_NAMES, VideoClassifier, VideoResNet, temporal_kernel


def stage_shapes(model: VideoResNet, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    out, h = {}, model.stem(x)
    out["pool1"] = tuple(h.shape)
    for name in STAGE_NAMES:
        h = model.after_stage(name, model.stage(name)(h))
        out[name] = tuple(h.shape)
    return out


@pytest.mark.parametrize("arch", ["c2d", "i3d"])
@pytest.mark.parametrize("pool2", [False, True], ids=["graph16", "pool2"])
def test_resnet50_stage_shapes_at_paper_size(arch, pool2):
    # meta tensors: the full 32x224x224 network, shapes only, no compute
    with torch.device("meta"):
        model = VideoResNet(arch, pool2=pool2)
        shapes = stage_shapes(model, torch.empty(2, 3, 32, 224, 224))
    t = 8 if pool2 else 16
    assert shapes == {
        "pool1": (2, 64, 16, 56, 56),
        "res2": (2, 256, t, 56, 56),
        "res3": (2, 512, t, 28, 28),
        "res4": (2, 1024, t, 14, 14),
        "res5": (2, 2048, t, 7, 7),
    }


def test_parameter_counts_match_resnet50():
    with torch.device("meta"):
        c2d = VideoClassifier("c2d", 1000)
        i3d = VideoClassifier("i3d", 1000)
    # torchvision's resnet50(): 25,557,032 parameters, 320 state_dict entries, same names
    assert sum(p.numel() for p in c2d.parameters()) == 25_557_032
    assert len(c2d.state_dict()) == 320
    assert list(c2d.state_dict()) == list(i3d.state_dict())
    assert "layer3.5.conv3.weight" in c2d.state_dict() and "layer2.0.downsample.1.running_var" in c2d.state_dict()
    # I3D adds 4 temporal taps to conv1 and 2 to each inflated bottleneck conv1 (in -> planes)
    def block_in(s, b):
        return 64 if (s, b) == (0, 0) else 256 * 2 ** (s - 1) if b == 0 else 256 * 2**s

    extra = 4 * 3 * 64 * 49 + sum(
        2 * block_in(s, b) * 64 * 2**s
        for s, n in enumerate((3, 4, 6, 3)) for b in range(n) if temporal_kernel("i3d", s, b) == 3
    )
    assert sum(p.numel() for p in i3d.parameters()) - 25_557_032 == extra


def test_i3d_temporal_kernels_follow_nonlocal_3x1x1():
    got = [[temporal_kernel("i3d", s, b) for b in range(n)] for s, n in enumerate((3, 4, 6, 3))]
    assert got == [[3, 3, 3], [3, 1, 3, 1], [3, 1, 3, 1, 3, 1], [1, 3, 1]]
    model = VideoResNet("i3d", **TINY)
    assert model.conv1.kernel_size == (5, 7, 7)
    assert all(temporal_kernel("c2d", s, b) == 1 for s in range(4) for b in range(6))
    assert VideoResNet("c2d", **TINY).conv1.kernel_size == (1, 7, 7)


@pytest.mark.parametrize("arch", ["c2d", "i3d"])
def test_tiny_forward_and_backward(arch):
    torch.manual_seed(0)
    model = VideoClassifier(arch, 7, base_width=4, blocks=(1, 2, 1, 1))
    x = torch.randn(2, 3, 8, 64, 48)
    feats = model.forward_features(x)
    assert feats.shape == (2, 128, 4, 2, 2)
    logits = model(x)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_c2d_has_no_temporal_mixing_before_pool1():
    # C2D convs act per frame: changing frame 5 changes only frames 4..6 of pool1's
    # temporal window (frames 2 and 3 of the pooled output), never far-away ones
    torch.manual_seed(0)
    model = VideoResNet("c2d", **TINY).eval()
    x = torch.randn(1, 3, 16, 32, 32)
    y = x.clone()
    y[:, :, 5] += 1.0
    with torch.no_grad():
        a, b = model.layer4(model.layer3(model.layer2(model.layer1(model.stem(x))))), \
            model.layer4(model.layer3(model.layer2(model.layer1(model.stem(y)))))
    changed = (a - b).abs().amax(dim=(0, 1, 3, 4)) > 0
    assert changed.nonzero().flatten().tolist() == [2, 3]


def test_bad_arguments():
    with pytest.raises(ValueError, match="arch"):
        VideoResNet("r2plus1d")
    with pytest.raises(ValueError, match="blocks"):
        VideoResNet("c2d", blocks=(3, 4, 6))
    with pytest.raises(ValueError, match="num_classes"):
        VideoClassifier("c2d", 0, **TINY)
    with pytest.raises(ValueError, match="shape"):
        VideoResNet("c2d", **TINY).stem(torch.randn(3, 8, 32, 32))


def test_stride_in_1x1_moves_the_stride_only():
    v15 = VideoResNet("c2d", **TINY)
    v1 = VideoResNet("c2d", **TINY, stride_in_1x1=True)
    assert v15.layer2[0].conv2.stride == (1, 2, 2) and v15.layer2[0].conv1.stride == (1, 1, 1)
    assert v1.layer2[0].conv1.stride == (1, 2, 2) and v1.layer2[0].conv2.stride == (1, 1, 1)
    assert {k: v.shape for k, v in v1.state_dict().items()} == {k: v.shape for k, v in v15.state_dict().items()}
    x = torch.randn(1, 3, 4, 64, 64)
    v1.load_state_dict(v15.state_dict())
    v1.eval(), v15.eval()
    with torch.no_grad():
        a = v15.layer2(v15.layer1(v15.stem(x)))
        b = v1.layer2(v1.layer1(v1.stem(x)))
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_flop_counter_matches_resnet50():
    # C2D on 2 frames = conv1 on 2 frames + one ResNet-50 frame after pool1's temporal stride.
    # ResNet-50 at 224 x 224 is 4.09 GMACs (torchvision's figure); conv1 is 118,013,952 MACs.
    from rstg_fast.video.flops import count

    with torch.device("meta"):
        model = VideoClassifier("c2d", 1000)
    c = count(model, (1, 3, 2, 224, 224))
    assert c["params"] == 25_557_032
    macs_one_frame = c["flops"] / 2 - 118_013_952
    assert abs(macs_one_frame - 4.09e9) < 0.01e9, macs_one_frame
