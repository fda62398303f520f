"""``sdesign info [MODEL]``: the model files plugins register by name, or what one
model file defines and the settings it takes."""
from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from ..modelfile import load_model_file
from ..modelfile_options import registered_model_files
from .app import main, model_settings_option, out


def _first_paragraph(text: str | None) -> str:
    return (text or "").strip().split("\n\n")[0].replace("\n", " ")


@main.command()
@click.argument("model_file", required=False)
@model_settings_option
def info(model_file, settings):
    """Without MODEL_FILE: the model files registered by name. With one (a path or a
    name): its description, defaults and the SETTINGS that --set can change."""
    if model_file is None:
        table = Table(title="model files by name (sdesign prune NAME …)")
        table.add_column("name")
        table.add_column("module")
        for name, module in sorted(registered_model_files().items()):
            table.add_row(escape(name), escape(module))
        out.print(table)
        return
    mf = load_model_file(model_file, settings)
    out.print(f"[bold]{escape(str(mf.path))}[/]")
    if mf.module.__doc__:
        out.print(escape(_first_paragraph(mf.module.__doc__)))
    provides = [name for name in ("evaluate", "make_optimizer", "configure") if callable(getattr(mf.module, name, None))]
    out.print(f"defines: build_model, example_inputs, train_data, loss{''.join(', ' + p for p in provides)}")
    for label, value in (("DEFAULTS", mf.defaults), ("PINNED", list(mf.pinned)), ("HEADLINE_METRIC", mf.headline_metric)):
        if value:
            out.print(f"{label}: {escape(str(value))}")
    declared = getattr(mf.module, "SETTINGS", None)
    if declared:
        table = Table(title="settings (--set NAME=VALUE)")
        for column in ("name", "default", "this run"):
            table.add_column(column)
        for name, default in declared.items():
            table.add_row(name, escape(repr(default)), escape(repr(mf.settings[name])))
        out.print(table)
