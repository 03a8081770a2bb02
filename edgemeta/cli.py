"""The ``edgemeta`` command: one click group whose subcommands are imported on first use.

Each subcommand lives in its own module under ``edgemeta/commands`` (light imports at the
top; torch, onnx and the heavy parts of the runtime are imported inside the command).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

LAZY_COMMANDS = {
    "train": ("edgemeta.commands.train_cmd", "train", "Meta-train an embedding with the prototypical loss."),
    "export": ("edgemeta.commands.export_cmd", "export", "Export a training run to a verified ONNX model."),
    "bake": ("edgemeta.commands.export_cmd", "bake", "Bake a model and a store into one classifier ONNX graph."),
    "eval": ("edgemeta.commands.eval_cmd", "eval_command", "N-way K-shot accuracy with a 95% CI, through the runtime."),
    "enroll": ("edgemeta.commands.store_cmds", "enroll", "Add examples of a class to a prototype store."),
    "remove": ("edgemeta.commands.store_cmds", "remove", "Remove classes from a prototype store."),
    "classify": ("edgemeta.commands.classify_cmd", "classify", "Classify images against a prototype store."),
    "info": ("edgemeta.commands.info_cmd", "info", "Show what a model or a store holds."),
    "bench": ("edgemeta.commands.bench_cmd", "bench", "Latency, throughput, memory and size of a model."),
    "demo": ("edgemeta.commands.demo_cmd", "demo", "Few-shot recognition on the shipped model and examples."),
    "web": ("edgemeta.commands.web_cmd", "web", "Serve the draw-to-teach browser demo (JavaScript runtime)."),
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | {n for n in LAZY_COMMANDS if _available(n)})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and _available(name):
            module, attr, _ = LAZY_COMMANDS[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table above, so ``edgemeta --help`` imports no subcommand.
        rows = [(n, LAZY_COMMANDS[n][2]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        from edgemeta.runtime.errors import EdgemetaError

        try:
            return super().invoke(ctx)
        except EdgemetaError as e:
            raise click.ClickException(_one_line(str(e))) from None
        except OSError as e:
            detail = f"{e.strerror}: {e.filename}" if e.strerror and e.filename else str(e)
            raise click.ClickException(_one_line(detail)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


def _available(name: str) -> bool:
    return importlib.util.find_spec(LAZY_COMMANDS[name][0]) is not None


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgemeta")
def main() -> None:
    """edgemeta: few-shot image recognition for the edge.

    Meta-train a small CNN embedding, export it as one ONNX file, then learn new classes on a
    device from a few examples each and classify by nearest prototype.
    """


if __name__ == "__main__":
    main()
