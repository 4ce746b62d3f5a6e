"""`flowrun init [DIR]`: scaffold a project that validates and runs as created."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from runner.scaffold import Project


def next_steps(directory: Path, project: Project) -> str:
    """The commands to run next, in order, each runnable as printed."""
    spec = f"specs/{project.name}.yaml"
    here = directory.resolve() == Path.cwd().resolve()
    lines = ["", "next steps:"]
    if not here:
        lines.append(f"  cd {shlex.quote(str(directory))}")
    lines += [
        f"  flowrun validate {spec}",
        f"  python -m tools.seed                      # creates .flowrun/{project.name}.db",
        f"  flowrun execute {spec} \\",
        "      --input examples/inputs/credit_granted.json \\",
        "      --responses examples/responses/credit_granted.jsonl   # dry run: writes previewed",
        f"  flowrun eval {spec} --cases evals",
        f"  flowrun policy test {spec} --cases policies/{project.name}.cases.yaml",
        "",
        "add --live to execute to perform the writes, --profile local to run on the embedded",
        "model instead of recorded responses; README.md explains each file.",
    ]
    return "\n".join(lines)


@click.command("init")
@click.argument(
    "directory", metavar="[DIR]", default=".", type=click.Path(file_okay=True, path_type=Path)
)
@click.option("--name", help="workflow name, lowercase-dashes (default: from DIR's name)")
@click.option(
    "--force",
    is_flag=True,
    help="add the project to a non-empty DIR (existing files are never overwritten)",
)
def init_command(directory: Path, name: str | None, force: bool) -> None:
    """Create a workflow project in DIR (default: the current folder).

    \b
    It holds a spec, its tools on SQLite and a seed, inputs and recorded responses,
    eval cases, policy cases, a GitHub Actions workflow and a README; it validates
    and runs as created. Exit codes: 0 created, 2 bad argument or conflict
    (nothing written).
    """
    from runner.scaffold import init_project

    project, files = init_project(directory, name, force)
    click.echo(f"created workflow {project.name!r} in {directory}: {len(files)} files")
    for rel in files:
        click.echo(f"  {rel}")
    click.echo(next_steps(directory, project))
