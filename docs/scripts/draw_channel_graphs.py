"""Draw the pictures of docs/channel-graph.md from real channel graphs.

    python docs/scripts/draw_channel_graphs.py --out docs/img

Each picture is a model's bipartite layer ↔ channel-group graph
(``ChannelGraph.to_networkx()``): layers along the bottom in model order,
channel groups above them, an edge for every layer width that belongs to a
group. Pinned groups (model inputs/outputs, ops without a rule) are red.
A last picture shows the √d proposals of each group of the digits CNN and
the widths that ``min`` and ``max`` pick.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

from sparsenet_design.channels.graph import build_channel_graph  # noqa: E402
from sparsenet_design.tracing.trace import trace  # noqa: E402
from sparsenet_design.design.widths import resolve_widths  # noqa: E402

#: Per-layer densities of the digits CNN at the end of the examples notebook's sparsification.
NOTEBOOK_DENSITIES = {"0": 0.861, "3": 0.404, "7": 0.251, "12": 0.335, "14": 0.678}
PALETTE = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 3]  # red means pinned


class TinyResNet(nn.Module):
    """A stem and two torchvision BasicBlocks, the second with a downsampling shortcut."""

    def __init__(self):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        down = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2), nn.BatchNorm2d(32))
        self.block1 = BasicBlock(16, 16)
        self.block2 = BasicBlock(16, 32, stride=2, downsample=down)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.block2(self.block1(self.stem(x))))


def _digits_cnn() -> nn.Module:
    from sparsenet_design.modelfile import load_model_file

    return load_model_file(ROOT / "examples" / "digits_cnn.py").build_model()


def _unet() -> nn.Module:
    from sparsenet_design.modelfile import load_model_file

    return load_model_file(ROOT / "examples" / "unet_denoise.py").build_model()


def _short(path: str, cls: str) -> str:
    return f"{path} ({cls})"


def draw_graph(model: nn.Module, inputs: tuple, title: str, out: Path) -> Path:
    graph = build_channel_graph(trace(model, inputs))
    g = graph.to_networkx()
    layers = [n for n in g if n[0] == "layer"]
    groups = [n for n in g if n[0] == "group" and g.degree(n) > 0]
    order = {path: i for i, (path, _) in enumerate(model.named_modules())}
    layers.sort(key=lambda n: order.get(n[1], 0))
    pos = {n: (i, 0.0) for i, n in enumerate(layers)}
    # a group sits above the mean position of its layers; spread ties a little
    taken: dict[float, int] = {}
    for n in sorted(groups, key=lambda n: sum(pos[m][0] for m in g[n]) / g.degree(n)):
        x = sum(pos[m][0] for m in g[n]) / g.degree(n)
        level = taken.get(round(x, 1), 0)
        taken[round(x, 1)] = level + 1
        pos[n] = (x + 0.25 * level, 1.0 + 0.35 * level)

    fig, ax = plt.subplots(figsize=(max(7.0, 0.45 * len(layers) + 1.5), 5.2))
    free = [n for n in groups if not g.nodes[n]["pinned"]]
    colour = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(free)}
    for a, b, data in g.edges(data=True):
        group, layer = (a, b) if a[0] == "group" else (b, a)
        if group not in pos:
            continue
        c = colour.get(group, "tab:red")
        style = "--" if data["attr"].startswith("in") else "-"
        (x0, y0), (x1, y1) = pos[layer], pos[group]
        ax.plot([x0, x1], [y0 + 0.06, y1 - 0.06], style, color=c, alpha=0.7, lw=1.4, zorder=1)
    for n in layers:
        x, y = pos[n]
        ax.text(x, y - 0.02, _short(n[1], g.nodes[n]["cls"]), ha="center", va="top", fontsize=7, zorder=3,
                rotation=90, bbox=dict(boxstyle="round,pad=0.25", fc="#f2f2f2", ec="#999"))
    for n in groups:
        x, y = pos[n]
        data = g.nodes[n]
        pinned = data["pinned"]
        ax.scatter([x], [y], s=260, color="tab:red" if pinned else colour[n], zorder=2,
                   edgecolors="black", linewidths=0.6)
        ax.text(x, y, str(data["width"]), ha="center", va="center", fontsize=7, color="white",
                fontweight="bold", zorder=4)
    ax.set_xlim(-0.8, len(layers) - 0.2)
    top = max(y for _, y in pos.values())
    ax.set_ylim(-1.6, top + 0.55)
    ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color="tab:red", label="pinned group (width kept)"),
               plt.Line2D([], [], marker="o", ls="", color=PALETTE[0], label="free group (number: channels)"),
               plt.Line2D([], [], ls="-", color="gray", label="layer's output width"),
               plt.Line2D([], [], ls="--", color="gray", label="layer's input width")]
    ax.legend(handles=handles, loc="upper left", fontsize=7, frameon=False, ncol=2)
    ax.set_title(title, fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return out


def draw_proposals(out: Path) -> Path:
    """For each free group of the digits CNN: every layer's proposal and the widths min/max pick."""
    model = _digits_cnn()
    graph_min = build_channel_graph(trace(model, (torch.randn(1, 1, 8, 8),)))
    decisions = {s: resolve_widths(build_channel_graph(trace(model, (torch.randn(1, 1, 8, 8),))),
                                   NOTEBOOK_DENSITIES, s) for s in ("min", "max")}
    rows = [d for d in decisions["min"].values() if d.proposals and not d.pinned]
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    for i, d in enumerate(rows):
        ax.barh(i, d.original, color="#e6e6e6", edgecolor="#999", height=0.6)
        for layer, role, width in d.proposals:
            ax.plot(width, i, "k|", markersize=16)
            ax.annotate(f"{layer}.{role}", (width, i + 0.32), fontsize=6.5, ha="center")
        ax.plot(d.width, i, "v", color="tab:green", markersize=9)
        ax.plot(decisions["max"][d.root].width, i, "^", color="tab:blue", markersize=9)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{d.label} ({d.original})" for d in rows], fontsize=8)
    ax.set_xlabel("channels")
    ax.plot([], [], "k|", markersize=12, label="a layer's proposal ⌈√d·C⌉")
    ax.plot([], [], "v", color="tab:green", label="-min picks")
    ax.plot([], [], "^", color="tab:blue", label="-max picks")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("√d proposals per channel group (digits CNN, densities of the notebook's run)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    del graph_min
    fig.savefig(out, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"), help="folder for the PNGs")
    args = parser.parse_args(argv)
    out = Path(args.out)
    torch.manual_seed(0)
    made = [
        draw_graph(_digits_cnn(), (torch.randn(1, 1, 8, 8),),
                   "digits CNN: a chain — one group per width, shared by conv → BatchNorm → next conv",
                   out / "channel-graph-chain.png"),
        draw_graph(TinyResNet(), (torch.randn(2, 3, 16, 16),),
                   "two ResNet BasicBlocks: the residual adds tie stem, block1 and the shortcut into groups",
                   out / "channel-graph-resnet.png"),
        draw_graph(_unet(), (torch.randn(2, 1, 32, 32),),
                   "U-Net: each decoder conv reads a cat of two groups (upsampled + skip)",
                   out / "channel-graph-unet.png"),
        draw_proposals(out / "sqrt-d-proposals.png"),
    ]
    for path in made:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
