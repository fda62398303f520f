"""``sdesign adacof`` commands through click's CliRunner."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sdesign_adacof.cli import adacof
from sdesign_adacof.imageio_utils import open_frames, read_uint8, write_image

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def run(*args):
    result = CliRunner().invoke(adacof, [str(a) for a in args], catch_exceptions=False)
    return result


def _avg_u8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.floor((a.astype(np.float64) + b) / 2 + 0.5).astype(np.uint8)


def _sk(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    g, p = gt / 255.0, pred / 255.0
    return peak_signal_noise_ratio(g, p, data_range=1), structural_similarity(g, p, data_range=1, channel_axis=-1)


def _rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    result = run("synth", root, "--count", 4, "--size", "40x56", "--seed", 2)
    assert result.exit_code == 0, result.output
    return root


def test_score_other_methods_predictions(synth_dir, tmp_path):
    pred_dir = tmp_path / "mine"
    expected = {}
    for d in sorted(synth_dir.iterdir()):
        a, g, b = (read_uint8(d / f"{n}.png") for n in ("frame_00", "frame_01_gt", "frame_02"))
        pred = np.roll(g, 1, axis=1)  # some "method": the truth shifted by a pixel
        write_image(pred_dir / f"{d.name}.png", pred)
        expected[d.name] = _sk(g, pred)
    result = run("score", pred_dir, "--dataset", "ucf101", synth_dir, "--csv", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.output and "UCF101-DVF" in result.output
    rows = _rows(tmp_path / "s.csv")
    assert len(rows) == 4
    for row in rows:
        p, s = expected[row["name"]]
        assert float(row["psnr"]) == pytest.approx(p, abs=1e-4)
        assert float(row["ssim"]) == pytest.approx(s, abs=1e-5)
    mean_psnr = np.mean([v[0] for v in expected.values()])
    assert f"{mean_psnr:.2f}" in result.output


def test_score_missing_predictions_is_a_clear_error(synth_dir, tmp_path):
    (tmp_path / "preds").mkdir()
    result = run("score", tmp_path / "preds", "--dataset", "folder", synth_dir)
    assert result.exit_code == 1
    assert "4 of 4 predictions are missing" in result.output and "0000.png" in result.output


def test_evaluate_frame_average_writes_csv_and_frames(synth_dir, tmp_path):
    result = run("evaluate", "--model", "average", "--dataset", "folder", synth_dir,
                 "--csv", tmp_path / "e.csv", "--save-dir", tmp_path / "frames")
    assert result.exit_code == 0, result.output
    assert "LPIPS n/a" in result.output
    for row in _rows(tmp_path / "e.csv"):
        d = synth_dir / row["name"]
        a, g, b = (read_uint8(d / f"{n}.png") for n in ("frame_00", "frame_01_gt", "frame_02"))
        saved = read_uint8(tmp_path / "frames" / f"{row['name']}.png")
        assert np.abs(saved.astype(int) - _avg_u8(a, b)).max() <= 1  # rounding of exact halves may differ
        p, s = _sk(g, saved)
        assert float(row["psnr"]) == pytest.approx(p, abs=1e-4) and float(row["ssim"]) == pytest.approx(s, abs=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "middlebury_others").is_dir(), reason="../shared/data not present")
def test_evaluate_middlebury_average_equals_skimage(tmp_path):
    result = run("evaluate", "--model", "average", "--dataset", "middlebury", DATA / "middlebury_others",
                 "--csv", tmp_path / "m.csv", "--save-dir", tmp_path / "frames")
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "m.csv")
    assert len(rows) == 12
    ref = []
    for r in rows:
        g = read_uint8(DATA / "middlebury_others" / "gt" / r["name"] / "frame10i11.png")
        p, s = _sk(g, read_uint8(tmp_path / "frames" / f"{r['name']}.png"))
        assert float(r["psnr"]) == pytest.approx(p, abs=1e-4) and float(r["ssim"]) == pytest.approx(s, abs=1e-5)
        ref.append(p)
    assert f"{np.mean(ref):.2f}" in result.output


def test_interpolate_pair_and_size_mismatch(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (33, 45, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (33, 45, 3), dtype=np.uint8)
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", b)
    result = run("interpolate", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "m.png", "--model", "average")
    assert result.exit_code == 0, result.output
    mid = read_uint8(tmp_path / "m.png")
    assert mid.shape == (33, 45, 3)
    assert np.abs(mid.astype(int) - _avg_u8(a, b)).max() <= 1
    write_image(tmp_path / "c.png", a[:32])
    result = run("interpolate", tmp_path / "a.png", tmp_path / "c.png", "-o", tmp_path / "m2.png", "--model", "average")
    assert result.exit_code == 1 and "must have the same size" in result.output


def test_unknown_model_and_missing_weights(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    result = run("interpolate", tmp_path / "a.png", tmp_path / "a.png", "-o", tmp_path / "m.png", "--model", "nope")
    assert result.exit_code == 1 and "unknown model" in result.output
    result = run("interpolate", tmp_path / "a.png", tmp_path / "a.png", "-o", tmp_path / "m.png",
                 "--model", "adacof", "--weights", tmp_path / "w.safetensors")
    assert result.exit_code == 1 and "does not exist" in result.output


def _frames(folder: Path, n: int, size=(31, 47)) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]
    for i, f in enumerate(frames):
        write_image(folder / f"{i:03d}.png", f)
    return frames


def test_video_folder_factor_4_odd_size(tmp_path):
    frames = _frames(tmp_path / "in", 3)
    result = run("video", tmp_path / "in", "--factor", 4, "-o", tmp_path / "out", "--model", "average")
    assert result.exit_code == 0, result.output
    assert "frames/s" in result.output
    out = sorted((tmp_path / "out").glob("*.png"))
    assert len(out) == 9
    got = [read_uint8(p) for p in out]
    assert np.array_equal(got[0], frames[0]) and np.array_equal(got[4], frames[1]) and np.array_equal(got[8], frames[2])
    # with the frame average, the t = 1/2 frame is the mean of its neighbours
    assert np.abs(got[2].astype(int) - _avg_u8(frames[0], frames[1])).max() <= 1
    assert np.abs(got[1].astype(int) - _avg_u8(frames[0], got[2])).max() <= 2


def test_video_file_round_trip(tmp_path):
    _frames(tmp_path / "in", 4, (32, 48))
    result = run("video", tmp_path / "in", "--factor", 2, "-o", tmp_path / "out.mp4", "--model", "average", "--fps", 10)
    assert result.exit_code == 0, result.output
    source = open_frames(tmp_path / "out.mp4")
    assert source.fps == pytest.approx(20)
    decoded = list(source)
    assert len(decoded) == 7 and decoded[0].shape == (32, 48, 3)
    # and a video file as input
    result = run("video", tmp_path / "out.mp4", "--factor", 2, "-o", tmp_path / "again", "--model", "average")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "again").glob("*.png"))) == 13


def test_video_frames_of_different_sizes(tmp_path):
    _frames(tmp_path / "in", 2)
    write_image(tmp_path / "in" / "002.png", np.zeros((20, 20, 3), np.uint8))
    result = run("video", tmp_path / "in", "-o", tmp_path / "out", "--model", "average")
    assert result.exit_code == 1 and "same size" in result.output


def test_dataset_errors_are_one_paragraph(tmp_path):
    result = run("evaluate", "--model", "average", "--dataset", "middlebury", tmp_path)
    assert result.exit_code == 1 and "Expected layout" in result.output and "Traceback" not in result.output


# ------------------------------------- the frame-average protocol check
def _published_scores(f0: Path, f1: Path, gt: Path, out: Path) -> tuple[float, float, np.ndarray]:
    """The published test's path with the frame average as the model: torchvision
    ToTensor, save_image, read back, skimage PSNR / SSIM on float32 arrays."""
    from PIL import Image
    from torchvision.transforms.functional import to_tensor
    from torchvision.utils import save_image

    load = lambda p: to_tensor(Image.open(p).convert("RGB"))  # noqa: E731
    a, b, g = load(f0), load(f1), load(gt)
    save_image(((a + b) / 2).unsqueeze(0), out)
    ref = load(out).numpy()
    g = g.numpy()
    p = peak_signal_noise_ratio(image_true=g, image_test=ref, data_range=1)
    s = structural_similarity(np.transpose(g, (1, 2, 0)), np.transpose(ref, (1, 2, 0)), data_range=1,
                              channel_axis=-1)
    return p, s, np.asarray(Image.open(out).convert("RGB"))


def _generated(kind: str, root: Path) -> Path:
    """Generated triplets in the dataset's layout (odd sizes, many exact halves)."""
    from sdesign_adacof.synthetic import make_triplet

    sizes = [(45, 70), (64, 64), (37, 50), (80, 33)]
    for i, size in enumerate(sizes):
        f0, mid, f1 = make_triplet(i, size, max_motion=6, seed=7)
        if kind == "middlebury":
            paths = (root / "input" / f"seq{i}" / "frame10.png", root / "gt" / f"seq{i}" / "frame10i11.png",
                     root / "input" / f"seq{i}" / "frame11.png")
        else:
            paths = tuple(root / str(i + 1) / n for n in ("frame_00.png", "frame_01_gt.png", "frame_02.png"))
        for p, img in zip(paths, (f0, mid, f1)):
            write_image(p, img)
    return root


def _protocol_case(kind: str, tmp_path: Path, every: int = 1):
    from sdesign_adacof.data import find_triplets

    shared = DATA / {"middlebury": "middlebury_others", "ucf101": "ucf101"}[kind]
    root = shared if shared.is_dir() else _generated(kind, tmp_path / f"generated_{kind}")
    triplets = find_triplets(kind, root)[::every]
    if every > 1:  # score a subset: a folder of links in the same layout
        root = tmp_path / f"subset_{kind}"
        for t in triplets:
            for src in (t.frame0, t.gt, t.frame1):
                dst = root / src.relative_to(src.parents[1 if kind == "middlebury" else 0].parent)
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(src)
    result = run("evaluate", "--model", "average", "--dataset", kind, root, "--csv", tmp_path / f"{kind}.csv",
                 "--save-dir", tmp_path / f"{kind}_frames")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in _rows(tmp_path / f"{kind}.csv")}
    assert len(rows) == len(triplets)
    worst_p = worst_s = 0.0
    for t in triplets:
        p, s, saved = _published_scores(t.frame0, t.frame1, t.gt, tmp_path / "published.png")
        ours = read_uint8(tmp_path / f"{kind}_frames" / f"{t.name}.png")
        assert np.array_equal(ours, saved), t.name  # the same 8-bit frame as save_image
        worst_p = max(worst_p, abs(float(rows[t.name]["psnr"]) - p))
        worst_s = max(worst_s, abs(float(rows[t.name]["ssim"]) - s))
    assert worst_p < 1e-4 and worst_s < 1e-5, (worst_p, worst_s)
    return root


@pytest.mark.parametrize("kind", ["middlebury", "ucf101"])
def test_frame_average_scores_as_save_image_and_skimage(kind, tmp_path):
    """Our protocol (evaluate) against the published path (save_image + scikit-image),
    per image to 1e-4 dB: on ../shared/data (all of Middlebury, every 10th UCF101
    triplet) when it is there, else on generated triplets in the same layouts."""
    _protocol_case(kind, tmp_path, every=10 if kind == "ucf101" and (DATA / "ucf101").is_dir() else 1)


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "ucf101").is_dir(), reason="../shared/data/ucf101 not present (the fast test runs)")
def test_frame_average_all_379_ucf101_triplets(tmp_path):
    _protocol_case("ucf101", tmp_path)


def test_convert_then_evaluate_runs_as_published(tmp_path, synth_dir):
    """`convert` writes our weights with the arch and mode; evaluate, interpolate
    and video pick them up without further flags."""
    import torch

    from sdesign_adacof.checkpoints import ARCH_KEY, ARCHS, MODE_KEY, weights_metadata
    from sdesign_adacof.interpolate import load_model

    torch.manual_seed(0)
    ours = ARCHS["compressed"].build()
    published = {}
    for key, value in ours.state_dict().items():  # the published key names of a compressed AdaCoF
        block, rest = key.split(".", 2)[1], key.split(".", 2)[2]
        published[f"get_kernel.module{block[0].upper() + block[1:]}.{rest}"] = value  # conv1 -> moduleConv1
    torch.save({"epoch": 3, "state_dict": published}, tmp_path / "compressed_adacof_F_5_D_1.pth")
    result = run("convert", tmp_path / "compressed_adacof_F_5_D_1.pth", "--arch", "compressed",
                 "-o", tmp_path / "c.safetensors")
    assert result.exit_code == 0, result.output
    assert "compressed AdaCoF (F=5, d=1)" in result.output and "mode published" in result.output
    meta = weights_metadata(tmp_path / "c.safetensors")
    assert meta[ARCH_KEY] == "compressed" and '"truncate"' in meta[MODE_KEY]
    model = load_model(None, tmp_path / "c.safetensors")
    assert model.mode.truncate and torch.equal(model.unet.conv1[0].weight, ours.unet.conv1[0].weight)

    result = run("evaluate", "--weights", tmp_path / "c.safetensors", "--dataset", "folder", synth_dir,
                 "--csv", tmp_path / "c.csv")
    assert result.exit_code == 0, result.output
    assert "compressed" in result.output and "LPIPS as published" in result.output
    files = sorted(synth_dir.iterdir())[0]
    result = run("interpolate", files / "frame_00.png", files / "frame_02.png", "-o", tmp_path / "mid.png",
                 "--weights", tmp_path / "c.safetensors")
    assert result.exit_code == 0, result.output
    # the same weights in the exact mode give another frame
    result = run("interpolate", files / "frame_00.png", files / "frame_02.png", "-o", tmp_path / "mid_exact.png",
                 "--weights", tmp_path / "c.safetensors", "--mode", "exact")
    assert result.exit_code == 0, result.output
    assert not np.array_equal(read_uint8(tmp_path / "mid.png"), read_uint8(tmp_path / "mid_exact.png"))

    result = run("evaluate", "--model", "cdfi", "--weights", tmp_path / "c.safetensors", "--dataset", "folder",
                 synth_dir)
    assert result.exit_code != 0 and "holds converted 'compressed' weights" in result.output
    result = run("evaluate", "--weights", tmp_path / "compressed_adacof_F_5_D_1.pth", "--dataset", "folder",
                 synth_dir)
    assert result.exit_code != 0 and "sdesign adacof convert" in result.output and "'compressed'" in result.output
    result = run("convert", tmp_path / "compressed_adacof_F_5_D_1.pth", "--arch", "cdfi",
                 "-o", tmp_path / "x.safetensors")
    assert result.exit_code != 0 and "try arch='compressed'" in result.output
