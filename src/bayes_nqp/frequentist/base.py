"""What a replication section returns, and how sections are registered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pandas as pd


@dataclass
class SectionResult:
    """One replication section's output.

    ``summary`` holds the keys this section adds to replication/summary.json (see results.py);
    ``tables`` and ``figures`` are written as DIR/replication/tables/<name>.{csv,md} and
    DIR/replication/figures/<name>.png.
    """

    summary: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict = field(default_factory=dict)  # name -> matplotlib Figure


#: section name -> function(panel, **options) -> SectionResult. Filled by each module's @section.
SECTIONS: dict[str, Callable[..., SectionResult]] = {}


def section(name: str):
    def deco(fn):
        SECTIONS[name] = fn
        return fn
    return deco
