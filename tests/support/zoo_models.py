"""Small non-torchvision architectures for the reconstruction coverage runs.

Each one stresses a coupling pattern the torchvision zoo has little of:

- :class:`UNet`: encoder/decoder with skip concatenations and transposed convs;
- :class:`DenseConcatNet`: DenseNet-style blocks where every layer reads the
  concatenation of all earlier outputs (long multi-segment cat layouts);
- :class:`MLPMixer`: token- and channel-mixing MLPs over a (B, N, C) sequence,
  with transposes between them (token mixing is a Linear over the patch axis);
- :class:`TinyViT`: a hand-written ViT (patch embedding, cls token, position
  embedding, multi-head attention written with reshape/permute/matmul).

All are plain ``nn.Module`` code with no custom ops, as a user would write them.
"""
from __future__ import annotations

import torch
from torch import nn


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Classic U-Net: ``depth`` down steps (max-pool), transposed-conv up steps,
    skip connections concatenated on channels, 1×1 head to ``n_classes``."""

    def __init__(self, in_channels: int = 3, n_classes: int = 2, base: int = 16, depth: int = 3):
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]
        self.stem = _double_conv(in_channels, widths[0])
        self.down = nn.ModuleList(_double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.merge = nn.ModuleList(_double_conv(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(self.pool(skips[-1])))
        y = skips.pop()
        for up, merge in zip(self.up, self.merge):
            y = merge(torch.cat([up(y), skips.pop()], dim=1))
        return self.head(y)


class _DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, 2 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(2 * growth)
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        x = self.conv1(torch.relu(self.norm(x)))
        return self.conv2(torch.relu(self.norm2(x)))


class _DenseBlock(nn.Module):
    def __init__(self, c_in: int, growth: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(_DenseLayer(c_in + i * growth, growth) for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseConcatNet(nn.Module):
    """DenseNet-style classifier: dense blocks joined by 1×1 transitions with pooling."""

    def __init__(self, in_channels: int = 3, n_classes: int = 10, growth: int = 8, blocks=(3, 3), stem: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        stages, c = [], stem
        for i, n in enumerate(blocks):
            stages.append(_DenseBlock(c, growth, n))
            c += n * growth
            if i < len(blocks) - 1:
                stages.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)))
                c //= 2
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm(self.stages(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class _MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, token_hidden), nn.GELU(), nn.Linear(token_hidden, tokens))
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = nn.Sequential(nn.Linear(dim, channel_hidden), nn.GELU(), nn.Linear(channel_hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class MLPMixer(nn.Module):
    def __init__(
        self, image_size: int = 32, patch: int = 8, in_channels: int = 3, dim: int = 64, depth: int = 2,
        token_hidden: int = 32, channel_hidden: int = 128, n_classes: int = 10,
    ):
        super().__init__()
        tokens = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.blocks = nn.Sequential(*[_MixerBlock(tokens, dim, token_hidden, channel_hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, C)
        x = self.norm(self.blocks(x))
        return self.head(x.mean(dim=1))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class _ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """A ViT in the timm style: conv patch embedding, cls token, learned position
    embedding, fused qkv attention with explicit head reshapes."""

    def __init__(
        self, image_size: int = 32, patch: int = 8, in_channels: int = 3, dim: int = 48, depth: int = 2,
        heads: int = 4, mlp: int = 96, n_classes: int = 10,
    ):
        super().__init__()
        tokens = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[_ViTBlock(dim, heads, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


# name -> (builder, example input shape)
ZOO_MODELS = {
    "unet": (lambda: UNet(), (1, 3, 64, 64)),
    "dense_concat_net": (lambda: DenseConcatNet(), (1, 3, 32, 32)),
    "mlp_mixer": (lambda: MLPMixer(), (1, 3, 32, 32)),
    "tiny_vit": (lambda: TinyViT(), (1, 3, 32, 32)),
}
