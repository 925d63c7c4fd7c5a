"""What ``hyperrl list`` prints and the README's generated tables: every row derived from the registry
and the learners' hyperparameter declarations, so neither can drift from the code."""

from __future__ import annotations

from collections.abc import Sequence

import hyperenvs
from agents.hparams import declared


def id_rows(text_filter: str | None) -> list[tuple[str, ...]]:
    """One row per id, all derived from the learner's declarations with the id's row applied."""
    rows = []
    for env_id, entry in hyperenvs.REGISTRY.items():
        if text_filter and text_filter.lower() not in env_id.lower():
            continue
        hps = {h.name: h for h in entry.hyperparameters()}
        chosen = [hps[n] for n in entry.algorithm.controlled]
        ctrl = ", ".join(f"{h.name} [{h.low:g}, {h.high:g}{' log' if h.log else ''}] = {h.resolved_default:g}" for h in chosen)
        bins = "; ".join(f"{h.name} {' '.join(f'{b:.3g}' for b in h.grid())}" for h in chosen)
        rows.append((env_id, entry.task, f"{entry.total_timesteps:,}", ctrl, bins))
    return rows


ID_HEADER = ("id", "inner task", "budget (env steps)", "controlled hyperparameters [range] = default", "default bins (discrete)")
HPARAM_HEADER = ("algorithm", "hyperparameter", "range", "default", "default bins", "what it does")


def hparam_rows(text_filter: str | None) -> list[tuple[str, ...]]:
    """Every algorithm's declared hyperparameters (before any id's overrides), once per algorithm."""
    rows, seen = [], set()
    for entry in hyperenvs.REGISTRY.values():
        algorithm = entry.algorithm
        if algorithm.name in seen or (text_filter and text_filter.lower() not in algorithm.name.lower()):
            continue
        seen.add(algorithm.name)
        own = declared(hyperenvs.registry.load(algorithm.hparams))
        for h in own if algorithm.exposes is None else [h for h in own if h.name in algorithm.exposes]:
            scale = "".join(f", {flag}" for flag, on in (("log", h.log), ("integer", h.integer)) if on)
            bins = f"x {' '.join(f'{m:.3g}' for m in h.multipliers)}" if h.multipliers else " ".join(f"{b:g}" for b in h.grid())
            rows.append((algorithm.name, h.name, f"[{h.low:g}, {h.high:g}{scale}]", f"{h.resolved_default:g}", bins, h.doc))
    return rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (the README's tables are these, from ``hyperrl list --markdown``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


README_BLOCKS = {"ids": (ID_HEADER, id_rows), "hyperparameters": (HPARAM_HEADER, hparam_rows)}
"""the README's generated tables, each between ``<!-- hyperrl list: NAME -->`` and ``<!-- end -->``"""


def readme_with_tables(text: str) -> str:
    """``text`` (the README) with every generated table replaced by what the registry derives now."""
    for name, (header, rows) in README_BLOCKS.items():
        start = f"<!-- hyperrl list: {name} -->"
        before, found, rest = text.partition(start + "\n")
        if not found:
            raise ValueError(f"README has no {start!r} marker")
        _, _, after = rest.partition("<!-- end -->")
        text = f"{before}{start}\n{markdown_table(header, rows(None))}\n<!-- end -->{after}"
    return text
