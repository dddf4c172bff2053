"""Option decorators shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def output_options(f: F) -> F:
    f = click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Write a self-contained HTML report.")(f)
    f = click.option("--json", "json_path", type=str, help="Write the JSON record to FILE ('-' for stdout).")(f)
    return f


def model_options(f: F) -> F:
    f = click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and null permutations.")(f)
    f = click.option("--allow-pickle", is_flag=True, help="Load pickled .bin/.pt weights (torch.load, weights_only=True).")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="No progress bar, no terminal summary.")(f)
    return f


def claim_options(f: F) -> F:
    """--claim and --declared-license: what the user was told about the model (a pitch deck, a press release)."""
    f = click.option("--declared-license", metavar="LICENCE",
                     help="The licence the model is said to be under (e.g. apache-2.0); checked against the licence "
                          "of the parent the weights show.")(f)
    f = click.option("--claim", "claims", multiple=True, metavar="TEXT",
                     help="What the model is said to be (repeatable): 'self-developed', 'trained from scratch', "
                          "'fine-tuned from ORG/NAME', 'based on NAME', '自主研发'. Set beside what the weights "
                          "show in 'Claims vs evidence'.")(f)
    return f
