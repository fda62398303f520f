"""Quality sanity check: a small CDFI trained briefly on synthetic triplets plus
triplets cut from ../shared/data/video_frames, scored on Middlebury against the
frame-average baseline (paper protocol PSNR / SSIM).

    python benchmarks/quality_sanity.py --minutes 10 [--width 0.25] [--crop 64] [--device cuda]

Prints a markdown table; record it in benchmarks/results/adacof_quality.md.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader

from sdesign_adacof.data import TripletDataset, collate_triplets, find_middlebury, find_ucf101, triplets_from_frames
from sdesign_adacof.interpolate import FrameAverage, Interpolator, count_parameters
from sdesign_adacof.losses import InterpolationLoss
from sdesign_adacof.metrics import mean_scores, score_triplets
from sdesign_adacof.synthetic import SyntheticTriplets
from sdesign_adacof.training import Settings, build_cdfi, make_optimizer

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def validate(model, triplets, device) -> float:
    """Mean PSNR (paper protocol) on validation triplets."""
    model.eval()
    interp = Interpolator(model, device)
    score = mean_scores(score_triplets(triplets, lambda t, a, b: interp(a, b)))["psnr"]
    model.train()
    return score


def per_image(model, device) -> None:
    """Per-triplet Middlebury PSNR of the frame average and of ``model``."""
    triplets = find_middlebury(DATA / "middlebury_others")
    rows = {name: score_triplets(triplets, lambda t, a, b, i=Interpolator(net, device): i(a, b))
            for name, net in (("average", FrameAverage()), ("cdfi", model))}
    print("| triplet | frame average | small CDFI | difference |")
    print("|---|---:|---:|---:|")
    for avg, ours in zip(rows["average"], rows["cdfi"]):
        print(f"| {avg['name']} | {avg['psnr']:.3f} | {ours['psnr']:.3f} | {ours['psnr'] - avg['psnr']:+.3f} |")
    means = {k: mean_scores(v) for k, v in rows.items()}
    wins = sum(o["psnr"] > a["psnr"] for a, o in zip(rows["average"], rows["cdfi"]))
    print(f"| mean | {means['average']['psnr']:.3f} | {means['cdfi']['psnr']:.3f} | "
          f"{means['cdfi']['psnr'] - means['average']['psnr']:+.3f} ({wins} of {len(triplets)} better) |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--synthetic", type=int, default=2000, help="synthetic triplets in the training mix")
    ap.add_argument("--synthetic-motion", type=int, default=8, help="largest motion (pixels) of the synthetic pan")
    ap.add_argument("--video-repeat", type=int, default=1, help="how often the video triplets appear per epoch")
    ap.add_argument("--init", choices=("default", "average"), default="average",
                    help="'average': start as the frame average (CDFI.start_from_average); 'default': paper init")
    ap.add_argument("--video-strides", default="1,2",
                    help="frame strides of the video triplets (2 = frames i, i+2, i+4: twice the motion)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-every", type=int, default=0,
                    help="score the model on --val-count UCF101 triplets every N steps and keep the best "
                         "(model selection on UCF101, never on Middlebury, the test set)")
    ap.add_argument("--val-count", type=int, default=24)
    ap.add_argument("--data", default="both", choices=("both", "synthetic", "video"),
                    help="training data: synthetic triplets, video_frames triplets, or both")
    ap.add_argument("--save", type=Path, help="write the kept weights here (safetensors)")
    ap.add_argument("--score-only", type=Path, metavar="WEIGHTS",
                    help="no training: load these weights (from --save) and print per-image Middlebury scores")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    s = Settings(width=args.width, kernel_size=5, dilation=1, spec=None)
    model = build_cdfi(s)
    if args.init == "average":
        model.start_from_average()
    model = model.to(args.device)
    frames = DATA / "video_frames"
    spaced = [t for k in args.video_strides.split(",") for t in triplets_from_frames(frames, spacing=int(k))]
    video = TripletDataset(spaced,
                           crop=(args.crop, args.crop), augment=True, seed=0)
    parts = [video] * args.video_repeat if args.data != "synthetic" else []
    if args.synthetic and args.data != "video":
        parts.append(SyntheticTriplets(args.synthetic, (args.crop, args.crop), max_motion=args.synthetic_motion, seed=0))
    data = ConcatDataset(parts)
    print(f"training triplets per epoch: {len(data)} ({sum(len(p) for p in parts if p is video)} from video_frames, "
          f"{sum(len(p) for p in parts if p is not video)} synthetic)", flush=True)
    loader = DataLoader(data, batch_size=args.batch, shuffle=True, collate_fn=collate_triplets, drop_last=True)
    if args.score_only:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(args.score_only)))
        per_image(model, args.device)
        return
    optimizer, _ = make_optimizer(model.parameters(), lr=args.lr)
    loss_fn = InterpolationLoss(None, 0.0, 0.01)
    val = find_ucf101(DATA / "ucf101")[:: max(1, 379 // args.val_count)][: args.val_count]
    best = (validate(model, val, args.device), 0, copy.deepcopy(model.state_dict())) if args.val_every else None
    if best:
        print(f"step 0 UCF101-val {best[0]:.3f}", flush=True)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < args.minutes * 60:
        for batch in loader:
            pred, extras = model(batch["frame0"].to(args.device), batch["frame1"].to(args.device), return_extras=True)
            loss = loss_fn(pred, batch["gt"].to(args.device), extras["offsets"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            if steps % 50 == 0:
                print(f"step {steps} loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
            if args.val_every and steps % args.val_every == 0:
                score = validate(model, val, args.device)
                print(f"step {steps} UCF101-val {score:.3f} (best {max(score, best[0]):.3f})", flush=True)
                if score > best[0]:
                    best = (score, steps, copy.deepcopy(model.state_dict()))
            if time.perf_counter() - start > args.minutes * 60:
                break
    trained_s = time.perf_counter() - start
    if best:
        model.load_state_dict(best[2])
        print(f"kept the step-{best[1]} weights (UCF101-val {best[0]:.3f})", flush=True)
    if args.save:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.save))
    triplets = find_middlebury(DATA / "middlebury_others")
    print("| model | params | training | Middlebury PSNR | SSIM |")
    print("|---|---|---|---|---|")
    for name, net in (("frame average", FrameAverage()), ("small CDFI", model)):
        interp = Interpolator(net, args.device)
        m = mean_scores(score_triplets(triplets, lambda t, a, b: interp(a, b)))
        train = "–" if name == "frame average" else \
            f"{steps} steps × {args.batch} × {args.crop}², init {args.init}, {trained_s:.0f} s" + \
            (f", kept step {best[1]} by UCF101-val" if best else "")
        print(f"| {name} | {count_parameters(net) / 1e6:.3f}M | {train} | {m['psnr']:.3f} | {m['ssim']:.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
