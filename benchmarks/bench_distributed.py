"""Steps per second of OBProx-SG sparsification on 1 vs N processes (torchrun).

    python benchmarks/bench_distributed.py --nproc 2 --epochs 3 --repeats 3

Runs the digits demo (examples/digits_cnn.py, global batch 64) through
``sparsenet_design.api.sparsify``: once as one plain process, once under
``torch.distributed.run --standalone --nproc_per_node N`` (gloo on CPU, NCCL on
CUDA with ``--device cuda``). Only the training loop is timed (after a
barrier), not the interpreter start-up. Each run also reports its final
density and accuracy: the N-process run follows the one-process trajectory
(same global batches), so they should agree.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL_FILE = ROOT / "examples" / "digits_cnn.py"


def worker(epochs: int, device: str, out: Path) -> None:
    import torch

    from sparsenet_design import distributed
    from sparsenet_design.api import sparsify
    from sparsenet_design.modelfile import load_model_file

    mf = load_model_file(MODEL_FILE)
    torch.manual_seed(0)
    model = mf.build_model()
    data = mf.train_data()
    dev = distributed.setup(device)
    distributed.barrier()
    started = time.perf_counter()
    result = sparsify(model, data, mf.loss, lr=0.1, lam=2.5e-3, epochs=epochs, n_p=max(1, epochs // 2),
                      device=dev, progress=False)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    distributed.barrier()
    seconds = time.perf_counter() - started
    if distributed.is_main_process():
        metrics = mf.evaluate(model)
        out.write_text(json.dumps({
            "world_size": distributed.world_size(), "seconds": seconds, "steps": result.history[-1]["step"],
            "loss": result.history[-1]["loss"], "density": result.density.overall, **metrics}))


def launch(nproc: int, epochs: int, device: str, out: Path) -> dict:
    script = [str(Path(__file__).resolve()), "--worker", "--epochs", str(epochs), "--device", device,
              "--out", str(out)]
    if nproc == 1:
        command = [sys.executable, *script]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   *script]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(out.read_text())


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.epochs, args.device, args.out)
        return
    rows: dict[int, list[dict]] = {1: [], args.nproc: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):  # interleaved, so a change in machine load hits both alike
            for n in rows:
                rows[n].append(launch(n, args.epochs, args.device, Path(tmp) / f"{n}-{r}.json"))
    import torch

    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), "
          f"{'CUDA ' + torch.cuda.get_device_name() if args.device.startswith('cuda') else 'CPU only'}; "
          f"torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")
    print(f"command: python benchmarks/bench_distributed.py --nproc {args.nproc} --epochs {args.epochs} "
          f"--repeats {args.repeats} --device {args.device}\n")
    print("| processes | steps | median s | steps/s (median) | all runs (s) | last-epoch loss | density | accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    base = None
    for n, runs in rows.items():
        med = statistics.median(run["seconds"] for run in runs)
        rate = runs[0]["steps"] / med
        base = base or rate
        times = ", ".join(f"{run['seconds']:.2f}" for run in runs)
        print(f"| {n} | {runs[0]['steps']} | {med:.2f} | {rate:.1f} ({rate / base:.2f}×) | "
              f"{times} | {runs[0]['loss']:.4f} | {runs[0]['density']:.4f} | "
              f"{runs[0]['accuracy']:.2f} |")


if __name__ == "__main__":
    main()
