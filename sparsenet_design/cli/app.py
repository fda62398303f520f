"""The ``sdesign`` group: consoles, the error style (one paragraph, no traceback), and the
options shared by the training commands."""
from __future__ import annotations

import sys

import click
from rich.console import Console

from ..training import distributed
from ..design.widths import STRATEGIES as WIDTH_STRATEGIES
from ..errors import SdesignError


out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

STRATEGIES = tuple(WIDTH_STRATEGIES)  # the strategy names the √d rule knows

# the arguments of this invocation, for relaunching it on several processes
INVOCATION: dict[str, list[str]] = {"args": []}


class SdesignGroup(click.Group):
    """Prints :class:`SdesignError` as a message, not a traceback (under torchrun:
    once, by rank 0, unless the error is another rank's own)."""

    def main(self, args=None, *rest, **kwargs):
        INVOCATION["args"] = list(args) if args is not None else sys.argv[1:]
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SdesignError as exc:
            if distributed.is_main_process():
                err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
            elif not getattr(exc, "from_rank0", False):
                Console(stderr=True, soft_wrap=True).print(
                    f"[bold red]error (rank {distributed.rank()}):[/] {exc}", highlight=False)
            ctx.exit(1)


@click.group(cls=SdesignGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sparsenet-design")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@click.pass_context
def main(ctx: click.Context, quiet: bool) -> None:
    """Turn sparsity into architecture: sparsify a model with OBProx-SG, read its
    per-layer density, rebuild a compact dense model by the √d rule."""
    ctx.obj = {"progress": not quiet}
    if not distributed.is_main_process():  # under torchrun only rank 0 talks
        out.quiet = err.quiet = True


def progress() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().obj and ctx.find_root().obj.get("progress", True))


nproc_option = click.option(
    "--nproc", type=click.IntRange(1), default=None,
    help="Run on N processes on this machine (one per GPU; gloo on CPU) via torchrun --standalone; "
         "the model file's batch is split across them. Multi-node: see docs/distributed.md.")


def common_training_options(f):
    for decorator in reversed([
        click.option("--seed", type=int, default=None, help="Seed for init, data order and randomness (default 0)."),
        click.option("--device", default=None, help="torch device (default: cuda if available, else cpu)."),
        click.option("--amp", is_flag=True, help="Mixed precision (bf16 on CPU, fp16 + GradScaler on CUDA)."),
        click.option("--accumulation", type=click.IntRange(1), default=None, help="Gradient accumulation steps."),
        click.option("--resume", is_flag=True, help="Continue the interrupted run in --out exactly."),
        click.option("--checkpoint-every", "checkpoint_every", type=click.IntRange(1), default=None,
                     help="Also checkpoint every N optimizer steps (for long epochs); always at epoch ends."),
        nproc_option,
    ]):
        f = decorator(f)
    return f


def model_settings_option(f):
    """``--set NAME=VALUE`` (repeatable): one of the model file's SETTINGS."""
    from ..modelfile_options import parse_assignments

    return click.option(
        "--set", "settings", multiple=True, metavar="NAME=VALUE",
        callback=lambda ctx, param, values: parse_assignments(values),
        help="Set one of the model file's SETTINGS (repeatable); `sdesign info MODEL` lists them.",
    )(f)
