"""The HTML report: one self-contained page built from a real (tiny) run folder."""
from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sparsenet_design.errors import SdesignError
from sparsenet_design.report.html import render_html, width_changes, write_html_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Collects image sources, links and table rows of a page."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag in ("a", "link", "script") and (attrs.get("href") or attrs.get("src")):
            self.links.append(attrs.get("href") or attrs.get("src"))
        if tag == "tr":
            self._row = []
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def _tiny_run(root: Path, epochs: int = 3) -> tuple[Path, Path, nn.Module, nn.Module]:
    """A real prune run (sparsify with a run folder) and a reconstruct folder."""
    from sparsenet_design import reconstruct, sparsify
    from sparsenet_design.training.checkpoint import save_weights
    from sparsenet_design.training.runs import prepare_run

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 3))
    x = torch.randn(96, 12)
    y = (x[:, :3]).argmax(1)
    data = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)

    def loss(m, batch):
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    run = prepare_run(root / "prune", "prune", {"lr": 0.2, "lam": 2e-2, "epochs": epochs})
    sparsify(model, data, loss, lr=0.2, lam=2e-2, epochs=epochs, n_p=1, run_dir=run.root, progress=False,
             evaluate=lambda m: {"accuracy": float((m(x).argmax(1) == y).float().mean())})
    save_weights(model, run.sparse_weights)
    compact, spec = reconstruct(model, (torch.randn(2, 12),), strategy="min")
    design = prepare_run(root / "design", "reconstruct", {"strategy": "min"})
    spec.save(design.spec)
    return run.root, design.root, model, compact


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return _tiny_run(tmp_path_factory.mktemp("html"))


def test_page_is_self_contained_with_real_pngs(tiny_run):
    run_dir, design_dir, _, _ = tiny_run
    out = write_html_report(run_dir, design_dir=design_dir)
    assert out == run_dir / "report.html"
    page = _parse(out.read_text())
    # density vs epoch, layer bars, metrics, widths before/after
    assert len(page.images) == 4
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert page.links == []  # nothing fetched from elsewhere


def test_layer_density_table_matches_the_weights(tiny_run):
    run_dir, _, model, _ = tiny_run
    page = _parse(render_html(run_dir))
    shown = {row[0]: row[1] for row in page.rows if len(row) == 2 and row[1].endswith("%")}
    for name, layer in model.named_modules():
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach()
            expected = 100 * (w != 0).sum().item() / w.numel()
            assert shown[name] == f"{expected:.2f} %"
    assert any(float(v.rstrip(" %")) < 100 for v in shown.values()), "the run should have sparsified something"


def test_widths_table_matches_the_compact_model(tiny_run):
    run_dir, design_dir, model, compact = tiny_run
    rows = width_changes(design_dir / "spec.json")
    assert rows, "the spec lists the rebuilt modules"
    for row in rows:
        assert getattr(model.get_submodule(row["module"]), row["attr"]) == row["before"]
        assert getattr(compact.get_submodule(row["module"]), row["attr"]) == row["after"]
    page = _parse(render_html(run_dir, design_dir))
    width_rows = [r for r in page.rows if len(r) == 6 and r[0] != "module"]
    assert [(r[0], r[2], int(r[3]), int(r[4])) for r in width_rows] == [
        (r["module"], r["attr"], r["before"], r["after"]) for r in rows]


def test_density_cards_follow_the_log(tiny_run):
    run_dir, _, _, _ = tiny_run
    records = [json.loads(line) for line in (run_dir / "density.jsonl").read_text().splitlines()]
    first, last = records[0]["overall_density"], records[-1]["overall_density"]
    page = render_html(run_dir)
    assert f"{100 * first:.1f} % → {100 * last:.1f} %" in page
    assert f"over {len(records) - 1} epochs" in page


def test_design_folder_layout_is_found(tiny_run, tmp_path):
    """A `sdesign design` folder: prune/, design/ and a summary.json at the top."""
    run_dir, design_dir, _, _ = tiny_run
    top = tmp_path / "demo"
    top.mkdir()
    (top / "prune").symlink_to(run_dir, target_is_directory=True)
    (top / "design").symlink_to(design_dir, target_is_directory=True)
    summary = {"before": {"params": 2000, "size_mb": 0.008, "macs": 1000, "latency_ms": None,
                          "metrics": {"accuracy": 0.9}},
               "after": {"params": 500, "size_mb": 0.002, "macs": 250, "latency_ms": None,
                         "metrics": {"accuracy": 0.88}},
               "compression": 4.0, "headline_metric": "accuracy"}
    (top / "summary.json").write_text(json.dumps(summary))
    out = write_html_report(top, tmp_path / "page.html")
    page = _parse(out.read_text())
    rows = {r[0]: r[1:] for r in page.rows}
    assert rows["parameters"] == ["2,000", "500", "4.00×"]
    assert rows["accuracy"][:2] == ["0.9", "0.88"]
    assert len(page.images) == 4  # widths found through design/
    assert "4.00×" in out.read_text()


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(SdesignError, match="does not exist"):
        render_html(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SdesignError, match="no density log"):
        render_html(tmp_path / "empty")


def test_command_line(tiny_run, tmp_path):
    """`sdesign report --html --out`: the one command for the page. A run made from
    Python (no model file recorded) gets a clear message; its page is written from Python."""
    from click.testing import CliRunner

    from sparsenet_design.cli import main

    run_dir, design_dir, _, _ = tiny_run
    result = CliRunner().invoke(main, ["report", str(run_dir), "--no-plots", "--html"])
    assert result.exit_code == 1 and "does not record a model file" in result.output
    missing = CliRunner().invoke(main, ["report", str(tmp_path / "missing"), "--html"])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    target = write_html_report(run_dir, tmp_path / "sub" / "r.html", design_dir=design_dir)
    assert target == tmp_path / "sub" / "r.html" and re.search(r"<title>.*prune</title>", target.read_text())
