"""``taxmeter evaluate``: what each filter catches, beside what it costs.

    taxmeter evaluate [--config FILE] [--dataset FILE.jsonl] [--json]
                      [--target FILTER=LABEL[,LABEL]]... [--stage input]

Runs a labelled dataset (JSON lines: a string ``prompt`` and a string
``label`` such as ``benign``, ``attack`` or ``pii``; other keys ignored;
default: the dataset shipped in ``proxy/datasets/prompts.jsonl``) through
each configured filter alone and through the whole input chain of the
heaviest-weighted variant, built and run as the proxy builds and runs them
(see :mod:`proxy.commands.evaluate.run`), one prompt at a time on uvloop.

Per filter and for the chain: the share of each label's prompts flagged
(blocked or redacted; observe-mode filters are evaluated as if enforcing),
precision and recall against the labels it targets (default: every label but
``benign``; ``--target`` narrows a filter to some), errors and timeouts, and
latency percentiles of its calls. Figures are computed at run time; nothing
is stored. Output: a table, or one JSON document with ``--json`` (shape in
docs/evaluate.md).

Exit status: 0; 2 on a bad config (the message names the key), an unreadable
or malformed dataset (file and line), an empty one, or a bad ``--target``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, TextIO

import uvloop

from filters.base import Stage
from proxy.commands.evaluate.run import FirstFailures, Plan, Tally, close_filters, measure, plan
from proxy.commands.evaluate.text import render
from proxy.commands.report.stats import summarize
from proxy.config.labelled import DatasetError, read_lines
from proxy.config.schema import Config, ConfigError, load_config
from proxy.judge.build import build_filters
from proxy.judge.offload import ThreadOffload

BENIGN = "benign"
Targets = dict[str, tuple[str, ...]]


class EvaluateError(Exception):
    """Nothing can be evaluated; the message says why (exit status 2)."""


@dataclass(frozen=True, slots=True)
class Dataset:
    path: str
    builtin: bool
    prompts: tuple[str, ...]
    labels: tuple[str, ...]
    counts: dict[str, int]  # prompts per label, benign first, then by name


def _target(text: str) -> tuple[str, tuple[str, ...]]:
    name, sep, rest = text.partition("=")
    labels = tuple(dict.fromkeys(lb.strip() for lb in rest.split(",") if lb.strip()))
    if not sep or not name.strip() or not labels:
        raise argparse.ArgumentTypeError(f"expected FILTER=LABEL[,LABEL...], got {text!r}")
    return name.strip(), labels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config (default: built-in)")
    parser.add_argument(
        "--dataset",
        metavar="FILE.jsonl",
        help='JSON lines with "prompt" and "label" (default: the shipped dataset)',
    )
    parser.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    parser.add_argument(
        "--target",
        metavar="FILTER=LABEL[,LABEL]",
        type=_target,
        action="append",
        default=[],
        help="the labels FILTER is meant to catch (default: every label but benign); repeatable",
    )
    parser.add_argument(
        "--stage", choices=("input",), default="input", help="the stage to evaluate (input)"
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The command: load, measure, print. Returns the exit status."""
    try:
        config = load_config(args.config)
        dataset = load_dataset(args.dataset)
        report, failures = uvloop.run(_evaluate(config, dataset, args.stage, dict(args.target)))
    except ConfigError as exc:
        print(f"taxmeter: config error: {exc}", file=err)
        return 2
    except EvaluateError as exc:
        print(f"taxmeter evaluate: {exc}", file=err)
        return 2
    for what, exc_text in failures.items():
        detail = f": {exc_text}" if exc_text else ""
        print(f"taxmeter evaluate: first failure: {what}{detail}", file=err)
    out.write(json.dumps(report, indent=2) + "\n" if args.json else render(report))
    return 0


def load_dataset(path: str | None) -> Dataset:
    """Read a JSON-lines dataset (None: the shipped one); blank lines are skipped."""
    prompts: list[str] = []
    labels: list[str] = []
    try:
        shown, documents = read_lines(path)
        for where, item in documents:
            prompt = item.get("prompt") if isinstance(item, dict) else None
            label = item.get("label") if isinstance(item, dict) else None
            if not isinstance(prompt, str) or not isinstance(label, str) or not label:
                raise EvaluateError(
                    f'{where}: expected an object with a string "prompt" '
                    'and a non-empty string "label"'
                )
            prompts.append(prompt)
            labels.append(label)
    except DatasetError as exc:
        raise EvaluateError(str(exc)) from None
    if not prompts:
        raise EvaluateError(f"{shown}: the dataset holds no prompts")
    tally = Counter(labels)
    counts = {lb: tally[lb] for lb in sorted(tally, key=lambda lb: (lb != BENIGN, lb))}
    return Dataset(shown, path is None, tuple(prompts), tuple(labels), counts)


def _check_targets(wanted: Targets, the_plan: Plan, dataset: Dataset, stage: str) -> None:
    for name, labels in wanted.items():
        if name not in the_plan.solo:
            names = ", ".join(the_plan.solo) or "none"
            raise EvaluateError(
                f"--target: no filter named {name!r} runs on the {stage} stage (those that do: "
                f"{names})"
            )
        missing = [lb for lb in labels if lb not in dataset.counts]
        if missing:
            raise EvaluateError(
                f"--target {name}: no prompt is labelled {', '.join(map(repr, missing))} "
                f"(labels: {', '.join(dataset.counts)})"
            )


async def _evaluate(
    config: Config, dataset: Dataset, stage: Stage, wanted: Targets
) -> tuple[dict[str, Any], dict[str, str]]:
    # Built on the running loop, as in the proxy, for filters that bind to it.
    built = build_filters(config)
    offload = ThreadOffload()
    failures = FirstFailures()
    chain_log = logging.getLogger("taxmeter.chain")
    propagate = chain_log.propagate
    try:
        the_plan = plan(config, built, stage, offload)
        if not the_plan.solo:
            raise EvaluateError(f"no configured filter runs on the {stage} stage")
        _check_targets(wanted, the_plan, dataset, stage)
        chain_log.addHandler(failures)
        chain_log.propagate = False
        solo, whole = await measure(the_plan, dataset.prompts, dataset.labels)
    finally:
        chain_log.removeHandler(failures)
        chain_log.propagate = propagate
        await close_filters(built, offload)
    default = tuple(lb for lb in dataset.counts if lb != BENIGN)
    modes = {spec.name: spec.mode for spec in config.filters}
    filters = {
        name: {"mode": modes[name], **_figures(tally, dataset, wanted.get(name, default))}
        for name, tally in solo.items()
    }
    report = {
        "dataset": {
            "path": dataset.path,
            "builtin": dataset.builtin,
            "prompts": len(dataset.prompts),
            "labels": dataset.counts,
        },
        "stage": stage,
        "filters": filters,
        "chain": {
            "variant": the_plan.variant.name,
            "filters": list(the_plan.chain_filters),
            **_figures(whole, dataset, default),
        },
        "skipped": list(the_plan.skipped),
    }
    return report, failures.first


def _figures(tally: Tally, dataset: Dataset, targets: tuple[str, ...]) -> dict[str, Any]:
    counts = dataset.counts
    flagged = sum(tally.flagged.values())
    hits = sum(tally.flagged[lb] for lb in targets)
    positives = sum(counts.get(lb, 0) for lb in targets)
    return {
        "flag_rate": {lb: tally.flagged[lb] / n for lb, n in counts.items()},
        "precision": hits / flagged if flagged else None,
        "recall": hits / positives if positives else None,
        "targets": list(targets),
        "errors": tally.errors,
        "timeouts": tally.timeouts,
        "latency_seconds": summarize(tally.seconds),
    }
