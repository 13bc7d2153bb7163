"""Data layer: column maps, readers, validation, the canonical Panel, the entropy index, the demo."""

from .columnmap import ColumnMap, read_column_map
from .panel import DATA_DIR, DEMO_MAP, DEMO_PANEL, REPO_ROOT, Panel, demo_panel, load_panel, panel_from_frame
from .validate import Problem, ValidationReport, validate_frame

__all__ = [
    "ColumnMap", "read_column_map", "Panel", "demo_panel", "load_panel", "panel_from_frame",
    "Problem", "ValidationReport", "validate_frame", "DATA_DIR", "DEMO_MAP", "DEMO_PANEL", "REPO_ROOT",
]
