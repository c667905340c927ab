"""The competition baseline's DBNet in PyTorch: timm encoder -> DB FPN decoder -> DB head.

This module needs ``torch`` and ``timm`` (the ``[torch]`` extra) and is imported only by the
commands that run a checkpoint, never by the rest of the package.

The module tree and parameter names follow the baseline's ``OCRModel`` exactly, so a
checkpoint written by the baseline loads strictly once its leading ``model.`` (the Lightning
module's attribute) is removed:

``encoder.model.<timm keys>``
    ``timm.create_model(name, features_only=True)``; the baseline then keeps the feature maps
    listed in ``select_features``.
``decoder.inners.{i}``
    1x1 convolution of stage ``i`` to ``inner_channels`` (256).
``decoder.outers.{0..n-2}``
    ``Sequential(conv3x3 -> output_channels, nearest upsample)``, coarsest level first, each
    upsampled to the finest stride; ``decoder.outers.{n-1}`` is the bare 3x3 convolution of the
    finest level.
``head.binarize.{0..7}``
    conv3x3 (256 -> 64), BN, ReLU, ConvTranspose2d(64, 64, 2, 2), BN, ReLU,
    ConvTranspose2d(64, 1, 2, 2), Sigmoid (for ``upscale=4``).
``head.thresh.{...}``
    The threshold branch, same layout (or the ``smooth`` variant). It is loaded so that the
    checkpoint is checked strictly, but never run: inference only needs the probability map.
"""

from __future__ import annotations

import math
from itertools import accumulate
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .checkpoint import DBNetSpec

__all__ = ["DBNetSpec", "TimmEncoder", "DBFPNDecoder", "DBHead", "DBNet", "build_dbnet",
           "timm_feature_info"]


def timm_feature_info(model_name: str, out_indices: Optional[Sequence[int]] = None,
                      meta: bool = True) -> Tuple[List[int], List[int], Dict[str, Tuple[int, ...]]]:
    """Channels, reductions and parameter shapes of a timm ``features_only`` backbone.

    Parameters
    ----------
    model_name : str
        timm model name.
    out_indices : sequence of int, optional
        timm's ``out_indices``; the model's default (every stage) when ``None``.
    meta : bool
        Build on the ``meta`` device (no memory, no initialisation) when timm allows it.

    Returns
    -------
    channels, reductions : list of int
        Per returned feature.
    shapes : dict
        ``state_dict`` key -> shape.
    """
    import timm

    kwargs = dict(pretrained=False, features_only=True)
    if out_indices is not None:
        kwargs["out_indices"] = tuple(out_indices)
    model = None
    if meta:
        try:
            with torch.device("meta"):
                model = timm.create_model(model_name, **kwargs)
        except Exception:  # some timm versions cannot initialise some models on meta
            model = None
    if model is None:
        model = timm.create_model(model_name, **kwargs)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return list(model.feature_info.channels()), list(model.feature_info.reduction()), shapes


class TimmEncoder(nn.Module):
    """A timm ``features_only`` backbone returning the selected feature maps.

    The baseline builds the backbone with every stage and then picks ``select_features``;
    here timm gets ``out_indices`` so that unused trailing stages are not built or computed
    (for most backbones the parameters are the same; where timm drops a trailing stage, the
    loader accepts the checkpoint's extra weights of exactly that stage). Negative indices
    fall back to the baseline's way (all stages, then Python indexing).

    Parameters
    ----------
    model_name : str
        timm model name.
    select_features : sequence of int
        Feature indices in the order the decoder expects them.
    """

    def __init__(self, model_name: str, select_features: Sequence[int]) -> None:
        super().__init__()
        import timm

        self.select_features = [int(i) for i in select_features]
        if min(self.select_features) >= 0:
            wanted = sorted(set(self.select_features))
            self.model = timm.create_model(model_name, pretrained=False, features_only=True,
                                           out_indices=tuple(wanted))
            self._positions = [wanted.index(i) for i in self.select_features]
        else:
            self.model = timm.create_model(model_name, pretrained=False, features_only=True)
            self._positions = list(self.select_features)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        features = self.model(x)
        return [features[i] for i in self._positions]

    def channels(self) -> List[int]:
        """Channels of the selected features, in decoder order."""
        ch = list(self.model.feature_info.channels())
        return [ch[i] for i in self._positions]

    def reductions(self) -> List[int]:
        """Strides of the selected features, in decoder order."""
        red = list(self.model.feature_info.reduction())
        return [red[i] for i in self._positions]


class DBFPNDecoder(nn.Module):
    """The baseline's "UNet" decoder: DB's feature pyramid, concatenation left to the head.

    Parameters
    ----------
    in_channels : sequence of int
        Channels of the encoder features, finest first.
    strides : sequence of int
        Their strides, finest first.
    inner_channels, output_channels : int
        Lateral width and per-level output width.
    bias : bool
        Bias on the convolutions.
    """

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int],
                 inner_channels: int = 256, output_channels: int = 64, bias: bool = False) -> None:
        super().__init__()
        steps = [strides[i] // strides[i - 1] for i in range(1, len(strides))]
        # Upsampling of the level i+1 output back to the finest stride, coarsest level first.
        to_finest = list(accumulate(steps, lambda a, b: a * b))
        self.upsamples = nn.ModuleList(nn.Upsample(scale_factor=s, mode="nearest") for s in steps)
        self.inners = nn.ModuleList(
            nn.Conv2d(c, inner_channels, kernel_size=1, bias=bias) for c in in_channels)
        outers: List[nn.Module] = [
            nn.Sequential(nn.Conv2d(inner_channels, output_channels, kernel_size=3, padding=1, bias=bias),
                          nn.Upsample(scale_factor=s, mode="nearest"))
            for s in reversed(to_finest)
        ]
        outers.append(nn.Conv2d(inner_channels, output_channels, kernel_size=3, padding=1, bias=bias))
        self.outers = nn.ModuleList(outers)

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        lateral = [conv(f) for conv, f in zip(self.inners, features)]
        # Top-down pathway: start at the coarsest level, upsample and add the next finer one.
        merged = [lateral[-1]]
        current = lateral[-1]
        for i in range(len(lateral) - 1, 0, -1):
            current = self.upsamples[i - 1](current) + lateral[i - 1]
            merged.append(current)
        # outers[0] handles the coarsest level, outers[-1] the finest.
        return [outer(m) for outer, m in zip(self.outers, merged)]


def _branch(in_channels: int, upscale: int, bias: bool, smooth: bool) -> nn.Sequential:
    """One head branch: conv3x3, BN, ReLU, then log2(upscale) x2 upsamplings, Sigmoid."""
    inner = in_channels // 4
    layers: List[nn.Module] = [nn.Conv2d(in_channels, inner, kernel_size=3, padding=1, bias=bias),
                               nn.BatchNorm2d(inner), nn.ReLU(inplace=True)]
    steps = int(math.log2(upscale))
    for i in range(steps):
        out = 1 if i == steps - 1 else inner
        if smooth:
            mid = inner if out == 1 else out
            up: List[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest"),
                                   nn.Conv2d(inner, mid, 3, padding=1, bias=bias)]
            if out == 1:
                up.append(nn.Conv2d(inner, 1, kernel_size=1, stride=1, padding=0, bias=True))
            layers.append(nn.Sequential(*up))
        else:
            layers.append(nn.ConvTranspose2d(inner, out, 2, 2))
        if out != 1:
            layers += [nn.BatchNorm2d(inner), nn.ReLU(inplace=True)]
    layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


class DBHead(nn.Module):
    """The DB head: probability branch ``binarize`` and threshold branch ``thresh``.

    Only ``binarize`` runs in :meth:`forward` (the baseline's inference mode); ``thresh``
    exists so that checkpoints load strictly.

    Parameters
    ----------
    in_channels : int
        Channels of the concatenated decoder output.
    upscale : int
        Power-of-two upsampling back to the network input resolution.
    bias : bool
        Bias on the first convolution of each branch.
    smooth : bool
        The threshold branch's ``smooth`` layout.
    """

    def __init__(self, in_channels: int = 256, upscale: int = 4, bias: bool = False,
                 smooth: bool = False) -> None:
        super().__init__()
        self.binarize = _branch(in_channels, upscale, bias, smooth=False)
        self.thresh = _branch(in_channels, upscale, bias, smooth=smooth)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.binarize(torch.cat(list(features), dim=1))


class DBNet(nn.Module):
    """Encoder, decoder and head with the baseline's names; ``forward`` gives ``prob_maps``.

    Parameters
    ----------
    spec : DBNetSpec
        The structure.
    """

    def __init__(self, spec: DBNetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = TimmEncoder(spec.encoder, spec.select_features)
        in_channels = spec.in_channels if spec.in_channels is not None else self.encoder.channels()
        self.decoder = DBFPNDecoder(in_channels, spec.strides, spec.inner_channels,
                                    spec.output_channels, spec.decoder_bias)
        self.head = DBHead(spec.head_in_channels, spec.upscale, spec.head_bias, spec.smooth)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` normalised images -> ``(N, 1, H, W)`` probability maps."""
        return self.head(self.decoder(self.encoder(images)))


def build_dbnet(spec: DBNetSpec) -> DBNet:
    """Build the network (random weights, evaluation mode)."""
    return DBNet(spec).eval()
