"""The synthetic demo estate with ground truth (``cellwall demo generate``).

``generate(out_dir, DemoConfig(...))`` writes flow files (AWS VPC flow logs or Zeek
``conn.log``), the inventory as the estate claims it, a label convention, and the ground
truth: intended edges, minimal rule sets at each granularity, attack flows and mislabels.
docs/demo.md describes the estate and every file.
"""

from cellwall.demo.config import FORMATS, DemoConfig, DemoResult
from cellwall.demo.generate import generate

__all__ = ["FORMATS", "DemoConfig", "DemoResult", "generate"]
