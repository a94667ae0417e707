"""Video backbones (C2D / I3D ResNet-50) with RSTG blocks, for Something-Something.

See docs/video.md for the configurations, the paper's numbers and how to reproduce them.
"""

from rstg_fast.video.model import VideoClassifier, build_video_model, rstg_factory
from rstg_fast.video.placement import PRESETS, STAGES, Placement, parse_placement
from rstg_fast.video.resnet3d import ARCHS, RESNET50_BLOCKS, STAGE_NAMES, Bottleneck, VideoResNet, temporal_kernel
from rstg_fast.video.weights import LoadReport, WeightLoadError, inflate_weight, load_resnet_weights, read_state_dict

__all__ = [
    "ARCHS", "PRESETS", "RESNET50_BLOCKS", "STAGES", "STAGE_NAMES", "Bottleneck", "LoadReport",
    "Placement", "VideoClassifier", "VideoResNet", "WeightLoadError", "build_video_model",
    "inflate_weight", "load_resnet_weights", "parse_placement", "read_state_dict", "rstg_factory",
    "temporal_kernel",
]
