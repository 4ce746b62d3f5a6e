"""`flowrun graph` and `flowrun diff`: what a spec change does, drawn and flagged for PR review."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from runner.errors import ExitCode, FlowrunError, UsageError
from runner.redact import echo_error

F = TypeVar("F", bound=Callable[..., Any])


def _errors_to_exit(fn: F) -> F:
    """A FlowrunError becomes its message and exit code, also outside the `flowrun` group."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FlowrunError as e:
            echo_error(e)
            click.get_current_context().exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot", "text"]),
    default="mermaid",
    show_default=True,
)
@click.option("--profile", help="draw the models this profile routes to")
@_errors_to_exit
def graph(spec: str, fmt: str, profile: str | None) -> None:
    """Draw a spec: node kinds, conditions on edges, models, writes and the gates that guard them.

    Exit codes: 0 drawn, 2 the spec is missing or does not validate.
    """
    from runner.graph import from_plan, to_dot, to_mermaid, to_text
    from runner.plan.compile import compile_plan
    from runner.spec import load_spec

    plan = compile_plan(load_spec(spec), profile)
    g = from_plan(plan)
    if fmt == "mermaid":
        click.echo(to_mermaid(g), nl=False)
    elif fmt == "dot":
        click.echo(to_dot(g, name=plan.name), nl=False)
    else:
        click.echo(to_text(g), nl=False)


def _fail_on(value: str | None) -> set[str]:
    from runner.diff.semantic import FAIL_CLASSES

    if not value:
        return set()
    out = {v.strip() for v in value.split(",") if v.strip()}
    unknown = sorted(out - set(FAIL_CLASSES))
    if unknown:
        raise UsageError(
            f"--fail-on: unknown class {unknown[0]!r}", hint=f"classes: {', '.join(FAIL_CLASSES)}"
        )
    return out


@click.command()
@click.argument("base", required=False)
@click.argument("head", required=False)
@click.option(
    "--git",
    "git_rev",
    metavar="REV",
    help="diff every spec changed since REV against the work tree",
)
@click.option(
    "--output",
    "fmt",
    type=click.Choice(["markdown", "json"]),
    default="markdown",
    show_default=True,
)
@click.option(
    "--fail-on",
    metavar="CLASSES",
    help="exit 1 when a flag of these classes is raised: invalid-spec, ungated-write, "
    "new-write-path, looser-policy, breaking-schema, budget-increase (comma-separated)",
)
@_errors_to_exit
def diff(
    base: str | None, head: str | None, git_rev: str | None, fmt: str, fail_on: str | None
) -> None:
    """Semantic diff of two spec versions (a path or REV:path each) for review, with risk flags.

    \b
    flowrun diff main:specs/x.yaml specs/x.yaml
    flowrun diff --git origin/main --fail-on ungated-write,breaking-schema

    A path missing on one side shows as an added or removed spec; a side that does not
    validate is reported and diffed as far as it can be read.

    Exit codes: 0 no flag of a --fail-on class, 1 a --fail-on class matched,
    2 bad input (unknown REV, not a git repository, unreadable file, bad arguments).
    """
    from runner.diff import diff_pair
    from runner.diff.load import changed_specs, load_arg, load_file_side, load_git_side, repo_root
    from runner.diff.render import MARKER, to_markdown
    from runner.diff.semantic import matched

    classes = _fail_on(fail_on)
    pairs: list[tuple[Any, Any, str]] = []
    if git_rev is not None:
        if base or head:
            raise UsageError("give --git REV or BASE and HEAD, not both")
        root = repo_root()
        names = changed_specs(git_rev)
        for name in names:
            b = load_git_side(git_rev, str(root / name))
            h = load_file_side(str(root / name))
            h.label = name
            pairs.append((b, h, name))
    else:
        if not base or not head:
            raise UsageError("give BASE and HEAD (a path or REV:path each), or --git REV")
        b, h = load_arg(base), load_arg(head)
        if not b.exists and not h.exists:
            raise UsageError(
                f"neither {base!r} nor {head!r} exists", hint="check the paths and the revision"
            )
        pairs.append((b, h, h.label if h.exists else b.label))
    results = [(b, h, title, diff_pair(b, h)) for b, h, title in pairs]
    if fmt == "json":
        data: Any = [r for *_, r in results] if git_rev is not None else results[0][3]
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(MARKER)
        if not results:
            click.echo(f"### flowrun diff\n\nNo spec changed since `{git_rev}`.")
        for b, h, title, r in results:
            click.echo(to_markdown(b, h, r, title=title))
    hits = [f for *_, r in results for f in matched(r, classes)]
    if hits:
        for f in hits:
            click.echo(f"fail-on {f['class']}: {f['message']}", err=True)
        click.get_current_context().exit(ExitCode.FAILED)
