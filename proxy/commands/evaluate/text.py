"""The table of ``taxmeter evaluate`` for people, from the command's JSON document."""

from __future__ import annotations

from typing import Any

from proxy.commands.report.text import _table, percent


def duration(seconds: float) -> str:
    """Microseconds below a millisecond, milliseconds below a second: filters span both."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f}ms"
    return f"{seconds:.2f}s"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _row(name: str, figures: dict[str, Any], labels: list[str]) -> list[str]:
    latency = figures["latency_seconds"]
    return [
        name,
        *(percent(figures["flag_rate"][label]) for label in labels),
        _ratio(figures["precision"]),
        _ratio(figures["recall"]),
        *(duration(latency[s]) for s in ("p50", "p99", "mean")),
        str(figures["errors"]),
    ]


def _names(names: list[str]) -> str:
    return ", ".join(names)


def render(report: dict[str, Any]) -> str:
    dataset = report["dataset"]
    labels = list(dataset["labels"])
    chain = report["chain"]
    filters: dict[str, dict[str, Any]] = report["filters"]
    source = f"{dataset['path']}{' (built-in)' if dataset['builtin'] else ''}"
    per_label = ", ".join(f"{label} {n}" for label, n in dataset["labels"].items())
    in_chain = _names(chain["filters"]) or "no filters"
    lines = [
        f"taxmeter evaluate: {source}: {dataset['prompts']} prompts ({per_label})",
        f"  stage: {report['stage']}; each filter alone, then the chain, one prompt at a time",
        f"  chain: variant {chain['variant']!r} ({in_chain})",
        "",
    ]
    header = ["filter", *labels, "precision", "recall", "p50", "p99", "mean", "errors"]
    rows = [_row(name, figures, labels) for name, figures in filters.items()]
    rows.append(_row("chain", chain, labels))
    lines += _table(header, rows)
    lines += ["", *_notes(report)]
    return "\n".join(lines) + "\n"


def _notes(report: dict[str, Any]) -> list[str]:
    chain = report["chain"]
    filters: dict[str, dict[str, Any]] = report["filters"]
    notes = [
        "  flag rate: the share of each label's prompts blocked or redacted",
        "  precision: flagged prompts whose label is a target / flagged prompts;",
        "  recall: flagged prompts whose label is a target / prompts whose label is a target",
    ]
    targets = {name: figures["targets"] for name, figures in filters.items()}
    if all(t == chain["targets"] for t in targets.values()):
        notes.append(f"  targets: {_names(chain['targets']) or 'none'}")
    else:
        targets["chain"] = chain["targets"]
        each = "; ".join(f"{name}: {_names(t) or 'none'}" for name, t in targets.items())
        notes.append(f"  targets: {each}")
    notes.append(
        "  latency: per prompt, of a filter's call alone or of the chain's whole input stage "
        "(p95 with --json)"
    )
    observing = [name for name, figures in filters.items() if figures["mode"] == "observe"]
    if observing:
        notes.append(f"  observe mode, evaluated as if enforcing: {_names(observing)}")
    outside = [name for name in filters if name not in chain["filters"]]
    if outside:
        notes.append(
            f"  not in the chain (off or disabled in variant {chain['variant']!r}), "
            f"evaluated alone: {_names(outside)}"
        )
    if report["skipped"]:
        notes.append(
            f"  not on the {report['stage']} stage, not evaluated: {_names(report['skipped'])}"
        )
    timed_out = [
        f"{name} {figures['timeouts']}"
        for name, figures in [*filters.items(), ("chain", chain)]
        if figures["timeouts"]
    ]
    if any(figures["errors"] for figures in [*filters.values(), chain]):
        notes.append(
            "  errors: calls that raised, returned no Verdict or timed out"
            + (f" (timeouts: {', '.join(timed_out)})" if timed_out else "")
        )
    return notes
