"""Reports of a tuning study: tables, best.yaml, paste lines per code version, trials, plots."""

from .export import TARGETS, Export, export_lines
from .writer import HoldoutResult, TuneReport, best_and_first, write_report

__all__ = ["TARGETS", "Export", "HoldoutResult", "TuneReport", "best_and_first",
           "export_lines", "write_report"]
