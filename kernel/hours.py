"""The local year as hours: what the distributor's coefficient file, the accounting and the simulations count.

Hour 1 starts at local midnight on 1 January and hour k is the k-th elapsed hour from there, so a year always has
8760 hours (8784 in a leap year) and the daylight-saving days simply have 23 and 25 of them (the numbering of the
coefficient file of Orden TED/1247/2021, BOE-A-2021-18706; docs/community.md, "The distributor file").
"""

from __future__ import annotations

import calendar
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np


def hours_in_year(year: int) -> int:
    """8760, or 8784 in a leap year."""
    return 8784 if calendar.isleap(year) else 8760


def year_hour_starts_utc(year: int, tz: str = "Europe/Madrid") -> np.ndarray:
    """UTC start of each hour of `year` (datetime64[s]); hour 1 starts at local midnight 1 Jan."""
    start = datetime(year, 1, 1, tzinfo=ZoneInfo(tz))
    s = np.datetime64(int(start.timestamp()), "s")
    return s + np.arange(hours_in_year(year)) * np.timedelta64(3600, "s")
