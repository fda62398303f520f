"""Dataset finders, augmentation and the synthetic triplet generator."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from sdesign_adacof.data import (DatasetError, TripletDataset, augment_triplet, collate_triplets, find_middlebury,
                                 find_triplet_folders, find_triplets, find_ucf101, find_vimeo, triplets_from_frames,
                                 vimeo_dataset)
from sdesign_adacof.imageio_utils import read_uint8, write_image
from sdesign_adacof.synthetic import SyntheticTriplets, make_triplet, write_triplet_folder

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data not present")


def _png(path: Path, value: int, size=(8, 12)) -> None:
    write_image(path, np.full((*size, 3), value, np.uint8))


# ------------------------------------------------------------------ finders
@needs_data
def test_middlebury_shared_data():
    triplets = find_middlebury(DATA / "middlebury_others")
    assert len(triplets) == 12
    names = [t.name for t in triplets]
    assert "Beanbags" in names and "Walking" in names
    ds = TripletDataset(triplets)
    item = ds[names.index("Venus")]
    assert item["frame0"].shape == item["gt"].shape == (3, 380, 420)


@needs_data
def test_ucf101_shared_data_and_dispatch():
    triplets = find_triplets("ucf101", DATA / "ucf101")
    assert len(triplets) == 379
    assert triplets[0].gt.name == "frame_01_gt.png"
    assert [t.name for t in triplets[:3]] == sorted([t.name for t in triplets], key=int)[:3]


@needs_data
def test_triplets_cut_from_video_frames():
    triplets = triplets_from_frames(DATA / "video_frames")
    assert len(triplets) == 50
    t = triplets[5]
    assert (t.frame0.name, t.gt.name, t.frame1.name) == ("00005.jpg", "00006.jpg", "00007.jpg")


@needs_data
def test_triplets_with_wider_spacing_double_the_gap():
    triplets = triplets_from_frames(DATA / "video_frames", spacing=2)
    assert len(triplets) == 48  # 52 frames: starts 0 … 47
    t = triplets[5]
    assert (t.frame0.name, t.gt.name, t.frame1.name) == ("00005.jpg", "00007.jpg", "00009.jpg")
    assert t.name == "00007_s2"
    with pytest.raises(DatasetError, match="at least 105"):
        triplets_from_frames(DATA / "video_frames", spacing=52)


def _fake_vimeo(root: Path, entries_train, entries_test) -> None:
    for e in entries_train + entries_test:
        for k in (1, 2, 3):
            _png(root / "sequences" / e / f"im{k}.png", 10 * k)
    (root / "tri_trainlist.txt").write_text("\n".join(entries_train) + "\n")
    (root / "tri_testlist.txt").write_text("\n".join(entries_test) + "\n\n")


def test_vimeo_layout(tmp_path):
    _fake_vimeo(tmp_path, ["00001/0001", "00001/0002"], ["00002/0001"])
    assert [t.name for t in find_vimeo(tmp_path, "train")] == ["00001/0001", "00001/0002"]
    test = find_vimeo(tmp_path, "test")
    assert len(test) == 1 and test[0].gt.name == "im2.png"
    ds = vimeo_dataset(tmp_path, "train", crop=(4, 6), seed=0)
    assert ds[0]["frame0"].shape == (3, 4, 6)
    assert torch.allclose(ds[0]["gt"], torch.full((3, 4, 6), 20 / 255))


def test_vimeo_missing_list_and_frames_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*tri_trainlist"):
        find_vimeo(tmp_path / "nope")
    _fake_vimeo(tmp_path, ["00001/0001"], ["00002/0001"])
    (tmp_path / "tri_testlist.txt").unlink()
    with pytest.raises(DatasetError, match="tri_testlist.txt is missing"):
        find_vimeo(tmp_path, "test")
    (tmp_path / "sequences" / "00001" / "0001" / "im2.png").unlink()
    with pytest.raises(DatasetError, match="00001/0001: missing im2.png"):
        find_vimeo(tmp_path, "train")


def test_middlebury_malformed(tmp_path):
    with pytest.raises(DatasetError, match="input/ \\+ gt/"):
        find_middlebury(tmp_path)
    _png(tmp_path / "other-data" / "Venus" / "frame10.png", 1)
    _png(tmp_path / "other-gt-interp" / "Venus" / "frame10i11.png", 2)
    with pytest.raises(DatasetError, match="Venus: missing frame11.png"):
        find_middlebury(tmp_path)
    _png(tmp_path / "other-data" / "Venus" / "frame11.png", 3)
    assert [t.name for t in find_middlebury(tmp_path)] == ["Venus"]


def test_ucf_malformed_and_unknown_kind(tmp_path):
    with pytest.raises(DatasetError, match="no UCF101-DVF triplets.*frame_01_gt"):
        find_ucf101(tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset kind"):
        find_triplets("kitti", tmp_path)


def test_triplet_folders(tmp_path):
    for name in ("a", "b/c"):
        for i in range(3):
            _png(tmp_path / name / f"x{i}.png", 50 * i)
    for i in range(2):
        _png(tmp_path / "bad" / f"y{i}.png", 0)
    found = find_triplet_folders(tmp_path)
    assert [t.name for t in found] == ["a", "b/c"]
    assert found[0].gt.name == "x1.png"
    with pytest.raises(DatasetError, match="wrong number of images: \\. \\(2 images\\)"):
        find_triplet_folders(tmp_path / "bad")


def test_frames_of_different_sizes_in_a_triplet(tmp_path):
    _png(tmp_path / "t" / "0.png", 0, (8, 8))
    _png(tmp_path / "t" / "1.png", 0, (8, 8))
    _png(tmp_path / "t" / "2.png", 0, (8, 10))
    with pytest.raises(DatasetError, match="differ in size"):
        TripletDataset(find_triplet_folders(tmp_path))[0]


# -------------------------------------------------------------- augmentation
def test_augmentation_is_consistent_and_covers_all_cases():
    h, w = 10, 14
    base = torch.arange(h * w, dtype=torch.float64).reshape(1, h, w).expand(3, h, w) * 10
    f0, gt, f1 = base, base + 1, base + 2
    rng = random.Random(0)
    seen = set()
    for _ in range(200):
        a, m, b = augment_triplet(f0, gt, f1, (6, 8), rng)
        assert a.shape == (3, 6, 8)
        step = m - a
        assert torch.all(step == step.flatten()[0]) and abs(step.flatten()[0].item()) == 1
        assert torch.equal(b, 2 * m - a)  # same crop and flips for all three frames
        swapped = step.flatten()[0].item() < 0
        grid = (m - 1) // 10  # the middle frame is base * 10 + 1 whatever the order
        hflip = bool(grid[0, 0, 1] < grid[0, 0, 0])
        vflip = bool(grid[0, 1, 0] < grid[0, 0, 0])
        seen.add((hflip, vflip, swapped))
    assert len(seen) == 8


def test_no_augmentation_takes_the_centre_crop(tmp_path):
    img = np.arange(8 * 12 * 3, dtype=np.uint8).reshape(8, 12, 3)
    for i in range(3):
        write_image(tmp_path / "t" / f"{i}.png", img)
    item = TripletDataset(find_triplet_folders(tmp_path), crop=(4, 6))[0]
    expected = torch.from_numpy(img[2:6, 3:9].copy()).permute(2, 0, 1).float() / 255
    assert torch.equal(item["frame0"], expected) and torch.equal(item["gt"], expected)


# ---------------------------------------------------------------- synthetic
def _best_shift(a: np.ndarray, b: np.ndarray, r: int) -> tuple[int, int]:
    """The integer shift (dy, dx) with a[y, x] == b[y + dy, x + dx] on the overlap."""
    h, w = a.shape[:2]
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            aa = a[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
            bb = b[max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
            if np.array_equal(aa, bb):
                return dy, dx
    raise AssertionError("no exact shift")


def test_synthetic_background_middle_is_exactly_half_way():
    for i in range(5):
        f0, mid, f1 = make_triplet(i, (40, 48), max_motion=8, n_patches=(0, 0), seed=3)
        s01 = _best_shift(f0, f1, 8)
        s0m = _best_shift(f0, mid, 4)
        assert s01 == (2 * s0m[0], 2 * s0m[1])


def test_synthetic_deterministic_and_moving():
    a = make_triplet(7, (32, 32), seed=1)
    b = make_triplet(7, (32, 32), seed=1)
    c = make_triplet(8, (32, 32), seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    ds = SyntheticTriplets(4, (24, 40))
    item = ds[3]
    assert item["gt"].shape == (3, 24, 40) and item["gt"].dtype == torch.float32
    with pytest.raises(IndexError):
        ds[4]
    batch = collate_triplets([ds[0], ds[1]])
    assert batch["frame0"].shape == (2, 3, 24, 40) and batch["name"] == ["synthetic_00000", "synthetic_00001"]


def test_synthetic_folder_round_trip(tmp_path):
    write_triplet_folder(tmp_path, 3, (16, 20), seed=5)
    triplets = find_ucf101(tmp_path)
    assert len(triplets) == 3
    _, mid, _ = make_triplet(2, (16, 20), seed=5)
    assert np.array_equal(read_uint8(triplets[2].gt), mid)
    assert len(find_triplet_folders(tmp_path)) == 3
