"""Power-quality analytics on the live twin: EN 50160 limits, events and weekly compliance, written back as
Smart Data Models `Anomaly` entities (DESIGN.md §3.5, docs/quality.md).

Pure functions live in `formulas` (unbalance, neutral), `aggregation` (IEC 61000-4-30 intervals), `limits`
(EN 50160, per-site), `conditions` (breaches, severity, open/close) and `compliance` (weekly shares); `service`
is the subscriber that writes Anomaly entities, `report` the weekly report from the temporal API.
"""

from datamodels.readings import Reading, reading_from_entity
from kernel.ports import QUALITY_PORT  # the analytics' notification endpoint and health

from .conditions import QualityTracker, evaluate
from .limits import SiteLimits, en50160_limits, load_site_limits

__all__ = ["QUALITY_PORT", "QualityTracker", "Reading", "SiteLimits", "en50160_limits", "evaluate",
           "load_site_limits", "reading_from_entity"]
