"""The demo behind ``make demo``: the whole DeepAlign job on simulated data, judged by truth."""
from .pipeline import DemoConfig, DemoResult, run_demo
from .report import write_plots, write_report

__all__ = ["DemoConfig", "DemoResult", "run_demo", "write_plots", "write_report"]
