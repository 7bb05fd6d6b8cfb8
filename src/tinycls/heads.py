"""The classifier heads every network ends in: a bias-free 1x1 conv on pooled features."""

import torch
from torch import nn


class ConvHead(nn.Module):
    """Bias-free 1x1 conv classifier on pooled features: (B, C) or (B, C, 1, 1) -> (B, K)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.reshape(x.shape[0], -1, 1, 1)).flatten(1)  # (B, K)


class Classifier(nn.Module):
    """A feature extractor that returns pooled (B, C) features, then a ConvHead."""

    def __init__(self, body: nn.Module, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = ConvHead(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
