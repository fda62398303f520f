"""Channel groups on the structures of docs/design.md, section 3, each checked on the rebuilt model."""
import torch
import torch.nn.functional as F
from torch import nn

from sparsenet_design import reconstruct
from sparsenet_design.kinds.prunable import prunable_layers


def uniform(model, d):
    return {name: d for name, _ in prunable_layers(model)}


def rebuild(model, x, d=0.25, strategy="min", **kw):
    compact, spec = reconstruct(model, (x,), strategy, densities=uniform(model, d), **kw)
    with torch.no_grad():
        assert compact(x).shape == model(x).shape
    return compact, spec


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.a = nn.Conv2d(16, 32, 3, padding=1)
        self.b = nn.Conv2d(32, 16, 3, padding=1)
        self.head = nn.Conv2d(16, 5, 1)

    def forward(self, x):
        x = self.bn(self.stem(x))
        x = x + self.b(F.relu(self.a(x)))
        return self.head(x)


def test_residual_add_ties_both_branches_and_batchnorm():
    compact, spec = rebuild(Residual(), torch.randn(2, 3, 8, 8))
    w = compact.stem.out_channels
    assert w == compact.b.out_channels == compact.bn.num_features == compact.head.in_channels
    assert w == 8  # ⌈0.5·16⌉
    assert compact.a.out_channels == compact.b.in_channels == 16
    assert compact.bn.running_mean.shape == (w,)


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Conv2d(3, 8, 1)
        self.q = nn.Conv2d(3, 16, 1)
        self.bn = nn.BatchNorm2d(24)
        self.c = nn.Conv2d(24, 4, 1)

    def forward(self, x):
        return self.c(self.bn(torch.cat([self.p(x), self.q(x)], dim=1)))


def test_cat_consumer_reads_sum_of_segments():
    compact, _ = rebuild(Concat(), torch.randn(1, 3, 4, 4))
    assert (compact.p.out_channels, compact.q.out_channels) == (4, 8)
    assert compact.c.in_channels == compact.bn.num_features == 12


class Depthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.pw1 = nn.Conv2d(3, 16, 1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw2 = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.pw2(self.dw(self.pw1(x)))


def test_depthwise_ties_in_out_and_groups():
    compact, _ = rebuild(Depthwise(), torch.randn(1, 3, 6, 6), d=0.09)
    w = compact.pw1.out_channels
    assert w == compact.dw.in_channels == compact.dw.out_channels == compact.dw.groups == compact.pw2.in_channels
    assert w == 5  # ⌈0.3·16⌉


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 32, 1)
        self.g = nn.Conv2d(32, 64, 3, padding=1, groups=4)
        self.b = nn.Conv2d(64, 3, 1)

    def forward(self, x):
        return self.b(self.g(self.a(x)))


def test_grouped_conv_keeps_widths_divisible_by_groups():
    compact, _ = rebuild(Grouped(), torch.randn(1, 3, 6, 6), d=0.09)
    assert compact.g.groups == 4
    assert compact.g.in_channels % 4 == 0 and compact.g.out_channels % 4 == 0
    # ⌈0.3·32⌉ = 10 → 12, ⌈0.3·64⌉ = 20 (already a multiple of 4)
    assert (compact.g.in_channels, compact.g.out_channels) == (12, 20)


class FlattenHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def test_flatten_scales_group_into_linear_features():
    compact, _ = rebuild(FlattenHead(), torch.randn(2, 1, 8, 8))
    assert compact.conv.out_channels == 4
    assert compact.fc1.in_features == 4 * 16
    assert compact.fc1.out_features == compact.fc2.in_features == 16
    assert compact.fc2.out_features == 10  # output pinned


class Shuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 32, 3, padding=1)
        self.ps = nn.PixelShuffle(2)
        self.b = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        return self.b(self.ps(self.a(x)))


def test_pixel_shuffle_divides_group_by_r_squared():
    compact, _ = rebuild(Shuffle(), torch.randn(1, 3, 4, 4), d=0.25)
    assert compact.a.out_channels % 4 == 0
    assert compact.b.in_channels == compact.a.out_channels // 4


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(6, 32)
        self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
        self.norm = nn.LayerNorm(32)
        self.out = nn.Linear(32, 3)

    def forward(self, x):
        h = self.embed(x)
        h = self.norm(h + self.attn(h, h, h)[0])
        return self.out(h)


def test_multihead_attention_keeps_heads_whole():
    compact, _ = rebuild(Attention(), torch.randn(2, 5, 6), d=0.1)
    e = compact.attn.embed_dim
    assert e % 4 == 0 and compact.attn.num_heads == 4
    assert e == compact.embed.out_features == compact.norm.normalized_shape[0] == compact.out.in_features
    assert e < 32


class QKVAttention(nn.Module):
    """The timm-style q/k/v projection pattern with ``self.head_dim`` in a reshape."""

    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.inp = nn.Linear(6, dim)
        self.out = nn.Linear(dim, 2)

    def forward(self, x):
        x = self.inp(x)
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.out(x + self.proj(y))


def test_qkv_pattern_resizes_head_dim_with_heads_whole():
    model = QKVAttention()
    compact, spec = rebuild(model, torch.randn(2, 5, 6), d=0.1)
    assert compact.num_heads == 4
    assert compact.qkv.out_features == 3 * compact.num_heads * compact.head_dim
    assert compact.proj.in_features == compact.num_heads * compact.head_dim
    assert compact.head_dim < 8
    assert "head_dim" in next(iter(spec.attributes))


class Chunk(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 1)
        self.b = nn.Conv2d(8, 3, 1)

    def forward(self, x):
        u, v = self.a(x).chunk(2, dim=1)
        return self.b(u * torch.sigmoid(v))


def test_chunk_halves_stay_equal():
    compact, _ = rebuild(Chunk(), torch.randn(1, 3, 4, 4), d=0.25)
    assert compact.a.out_channels % 2 == 0
    assert compact.b.in_channels == compact.a.out_channels // 2


def test_pinned_module_keeps_its_widths():
    compact, spec = rebuild(Residual(), torch.randn(1, 3, 8, 8), pinned=["a"])
    assert compact.a.out_channels == 32 and compact.a.in_channels == 16
    assert any("pinned" in reason for g in spec.groups for reason in g["pinned"])


class ConstantSlice(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 1)
        self.b = nn.Conv2d(4, 3, 1)

    def forward(self, x):
        return self.b(self.a(x)[:, :4])


def test_constant_channel_slice_pins_the_group():
    compact, spec = rebuild(ConstantSlice(), torch.randn(1, 3, 4, 4))
    assert compact.a.out_channels == 16
    assert any("slices channels" in r for g in spec.groups for r in g["pinned"])


class EinsumHeads(nn.Module):
    """maxvit-style attention: chunk, heads via reshape with ``self.head_dim``, einsum."""

    def __init__(self, dim=24, head_dim=4):
        super().__init__()
        self.n_heads, self.head_dim = dim // head_dim, head_dim
        self.inp = nn.Linear(5, dim)
        self.to_qkv = nn.Linear(dim, dim * 3)
        self.merge = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, 2)

    def forward(self, x):
        x = self.inp(x)
        B, P, D = x.shape
        q, k, v = torch.chunk(self.to_qkv(x), 3, dim=-1)
        q = q.reshape(B, P, self.n_heads, self.head_dim).permute(0, 2, 1, 3)
        k = k.reshape(B, P, self.n_heads, self.head_dim).permute(0, 2, 1, 3)
        v = v.reshape(B, P, self.n_heads, self.head_dim).permute(0, 2, 1, 3)
        att = torch.einsum("bhid,bhjd->bhij", q, k).softmax(-1)
        y = torch.einsum("bhij,bhjd->bhid", att, v).permute(0, 2, 1, 3).reshape(B, P, D)
        return self.out(x + self.merge(y))


def test_einsum_attention_ties_heads_and_sizes_from_shapes():
    compact, _ = rebuild(EinsumHeads(), torch.randn(2, 7, 5), d=0.2)
    assert compact.n_heads == 6
    assert compact.to_qkv.out_features == 3 * compact.n_heads * compact.head_dim
    # reshape(B, P, D) reads D from x: the merged heads must equal the residual width
    assert compact.n_heads * compact.head_dim == compact.inp.out_features == compact.merge.in_features


class SizeFromOtherTensor(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 16)
        self.b = nn.Linear(4, 16)
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        h = self.a(x)
        # an op without a rule: its output channels are unknown, then reshaped with h's width
        g = torch.nn.functional.hardshrink(self.b(x)).reshape(x.shape[0], h.shape[-1])
        return self.out(h + g)


def test_size_read_from_channels_for_unfollowed_data_pins_them():
    compact, _ = rebuild(SizeFromOtherTensor(), torch.randn(3, 4), d=0.1)
    assert compact.a.out_features == compact.b.out_features == 16
