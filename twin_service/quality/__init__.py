"""Power-quality analytics on the live twin: EN 50160 limits, events and weekly compliance, written back as
Smart Data Models `Anomaly` entities (docs/quality.md, docs/power-quality.md).

The modules are private, this file is the surface: `_limits` (EN 50160, per site), `_conditions` (breaches,
severity, open/close: `QualityTracker`), `_aggregation` (IEC 61000-4-30 intervals), `_compliance` (weekly
shares), `_service` (the subscriber that writes Anomaly entities: `create_app`) and `_report` (the weekly report
from the temporal API). The Reading and the three-phase formulas live in `datamodels`, shared with the page.
"""

from datamodels.readings import Reading, reading_from_entity
from kernel.ports import QUALITY_PORT  # the analytics' notification endpoint and health

from ._conditions import QualityTracker, evaluate
from ._limits import SiteConfigError, SiteLimits, en50160_limits, load_site_limits
from ._report import WeeklyReport, build_report, draw_chart, fetch_readings, parse_week
from ._service import AnomalyStore, ServiceConfig, create_app

__all__ = ["QUALITY_PORT", "AnomalyStore", "QualityTracker", "Reading", "ServiceConfig", "SiteConfigError",
           "SiteLimits", "WeeklyReport", "build_report", "create_app", "draw_chart", "en50160_limits", "evaluate",
           "fetch_readings", "load_site_limits", "parse_week", "reading_from_entity"]
