"""Shared helpers of the review suite: the `flowrun` group with graph and diff registered."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.review_cli import diff, graph

REPO = Path(__file__).resolve().parents[2]
PAIRS = Path(__file__).resolve().parent / "pairs"
REFERENCE = REPO / "specs" / "support_refund.yaml"


@pytest.fixture(scope="session")
def flowrun() -> click.Group:
    """The real CLI group, with the review commands added as the lead will wire them."""
    if "graph" not in cli.commands:
        cli.add_command(graph)
    if "diff" not in cli.commands:
        cli.add_command(diff)
    return cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
