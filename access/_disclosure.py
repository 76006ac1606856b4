"""The public view's defence against differencing: two public answers never differ by fewer than k homes.

The < 5 rule (no aggregate of fewer than 5 homes) does not stop the classic differencing attack on aggregate
statistics (Denning & Schlörer, "Inference controls for statistical databases", IEEE Computer 16(7), 1983):
ask for the same aggregate twice, once without and once with one home, and subtract. The public screen invites
it: the hour 10:00-11:00 is answered again on every visit, and its set of homes changes when a member joins
(a new member's distributor history is imported for past hours), when a meter that was offline sends its
buffered readings, or when a member leaves. The difference of the two answers is then that one home's hour.

The rule here (`PublicRelease`), per series of figures (hourly import, hourly export, the period's totals):

1. Each period (an hour, the accounts' month) is released over a set R of contributors chosen at its first
   release and kept: later answers for that period add up the same R (or, for pinned series, give the value
   first released), whatever data arrives meanwhile. A contributor of R whose data is gone (a member who left)
   freezes the period at its last released value. So the same period answered twice differs by nothing.
2. A contributor never released in the series before (a newcomer) enters only together with at least
   `batch` (k) other newcomers: until then it is left out of every period's sum, past and future. So the sums
   before and after a member joins, for the same hour or for adjacent hours, differ by at least k new homes.
3. A released period's set is replaced only when the new set differs from it by at least k contributors.
4. No period is released over fewer than `min_members` contributors (the < 5 rule itself).
5. A figure known only by its count of contributors (the settlement's hourly rows) cannot leave a newcomer
   out, so a new period counting 1 to k-1 more than ever released is withheld (else it would show the
   newcomer against the summed series that leave it out).
6. Two figures of the same hour over sets of homes differing by 1 to k-1 (the metered hour over the meters,
   the settled hour over the members: a member accounted from the distributor's file has no meter) are not
   both released: whichever comes first is, the other is withheld for that hour.
7. Departures leave in batches too (pinned series: the hours). A new period's set is compared with the
   nearest released period before and after it; when 1 to k-1 homes of that neighbour would be missing (a
   member left, a meter offline for the whole hour), k - (that many) other homes, the companions, are left out
   with them, and all of them are taken out of the released-before set: they count as newcomers again and
   come back only as a batch of k (rule 2). The meter that was offline comes back with its companions, which
   make up the batch. So the sums of two adjacent hours around a departure differ by >= k homes, as around a
   join. The cost: until k such homes come back (or join), k-1 companions are in no new hour's sum.

What it does not stop (docs/access.md): a figure whose contributors are known only by count (the
settlement's hourly rows) is guarded by the count, so one member leaving while another joins in the same
recomputation is not seen; the period totals (not pinned: they grow every hour) freeze at a departure rather
than take the rule above.

The ledger lives in a JSON file (mode 0600, atomic replace) so that a restart of the page does not forget
what was released and answer again over a new set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fiware_client import parse_time

log = logging.getLogger("access.disclosure")

MIN_MEMBERS = 5
PUBLIC_LEDGER = "public-releases.json"  # in DATA_DIR/access/
# An hour is released once every home released before has reported it, or SETTLE_S after its end: a meter's
# last readings of an hour often arrive minutes late, and a released hour keeps its first value.
SETTLE_S = 900.0
KEEP_PERIODS = 2000  # per series: ~83 days of hours; older periods are no longer on the public screen
ENERGY_COUNTERS = ("totalActiveEnergyImport", "totalActiveEnergyExport")
HOURLY_FIGURES = {"totalActiveEnergyImport": "importKwh", "totalActiveEnergyExport": "exportKwh"}
SETTLED_FIGURES = ("consumptionKwh", "generationKwh", "selfConsumedKwh", "surplusKwh")
TOTAL_FIGURES = ("consumptionKwh", "assignedKwh", "selfConsumedKwh", "gridImportKwh", "surplusKwh", "savingsEur",
                 "co2AvoidedKg", "trees")


@dataclass
class _Period:
    members: list[str]  # the released set (sorted), or ["#<count>"] when only the count is known
    value: Any


@dataclass
class _Series:
    seen: set[str] = field(default_factory=set)  # every contributor ever released in this series
    periods: dict[str, _Period] = field(default_factory=dict)
    most: int = 0  # counted series: the largest count released (newcomers beyond it wait for k)


class PublicRelease:
    """The release ledger: what each public figure was released over, and the rule deciding the next answer."""

    def __init__(self, path: Path | None = None, *, min_members: int = MIN_MEMBERS, batch: int = MIN_MEMBERS,
                 keep_periods: int = KEEP_PERIODS, settle_s: float = SETTLE_S) -> None:
        if batch < 1 or min_members < 1:
            raise ValueError("min_members and batch must be at least 1")
        self.path = Path(path) if path is not None else None
        self.min_members = min_members
        self.batch = batch
        self.keep_periods = keep_periods
        self.settle = timedelta(seconds=settle_s)
        self._series: dict[str, _Series] = {}
        self._lock = threading.Lock()
        self._dirty = False
        self._load()

    # --- the rule ----------------------------------------------------------------------------------------
    def release_sum(self, series: str, period: str, contributions: Mapping[str, float], *,
                    pin: bool = True, beside: int | None = None) -> float | None:
        """The public sum for `period` of `series`, from each contributor's value; None when withheld.

        `pin`: a released period keeps its first value (an hour: late readings of one meter would otherwise
        show as that meter's increment); False: the value is summed afresh over the released set (a month so
        far, which grows every hour). `beside`: the count of homes of another figure of the same period already
        released (the settlement's row of that hour); a first release over 1 to k-1 homes more or fewer is
        withheld, since the two figures' difference would be those few homes."""
        with self._lock:
            state = self._series.setdefault(series, _Series())
            present = set(contributions)
            newcomers = present - state.seen
            eligible = (present & state.seen) | (newcomers if len(newcomers) >= self.batch else set())
            record = state.periods.get(period)
            if record is not None:
                released = set(record.members)
                if len(eligible) >= self.min_members and len(eligible ^ released) >= self.batch:
                    released = eligible  # enough changed: the difference is an aggregate of >= k homes
                elif pin or not released <= present:
                    return record.value  # the same answer as before (or a released home's data is gone)
            else:
                released = eligible
                benched: set[str] = set()
                if pin:
                    benched = self._departures(state, series, period, released)
                    released = released - benched
                if len(released) < self.min_members or _near(len(released), beside, self.batch):
                    return None
                if benched:  # the departure rule: the departed and their companions re-enter only as a batch of k
                    state.seen -= benched
                    log.info("public %s %s: %d home(s) of the neighbouring hour missing; %d left out with them "
                             "until %d come back or join together", series, period,
                             len([m for m in benched if m not in contributions]),
                             len([m for m in benched if m in contributions]), self.batch)
            value = round(sum(float(contributions[m]) for m in released), 6)
            self._record(state, series, period, _Period(sorted(released), value))
            state.seen |= released
            return value

    def _departures(self, state: _Series, series: str, period: str, eligible: set[str]) -> set[str]:
        """The departure rule: the homes to take out of the released-before set (the missing ones of a released neighbour,
        and companions from `eligible`) so that `period`, released over `eligible` minus them, differs from the
        nearest released period before and after it by no home or by >= k. Companions are chosen by a hash of
        (series, home): stable across restarts and not the attacker's pick."""
        before = max((p for p in state.periods if p < period), default=None)
        after = min((p for p in state.periods if p > period), default=None)
        out: set[str] = set()
        for neighbour in (before, after):
            if neighbour is None:
                continue
            members = set(state.periods[neighbour].members)
            kept = eligible - out
            short = self.batch - len(members ^ kept)
            if len(members ^ kept) == 0 or short <= 0:
                continue
            candidates = sorted(kept & members, key=lambda m: hashlib.sha256(f"{series}|{m}".encode()).digest())
            out |= (members - kept) | set(candidates[:short])
            if len(candidates) < short:
                out |= kept  # not enough homes to make up k: nothing can be released
        return out

    def release_counted(self, series: str, period: str, count: int, value: Any, *,
                        beside: int | None = None) -> Any:
        """A figure whose contributors are known only by their number (the settlement's hourly rows).

        Released when `count` >= min_members. A released period keeps its value unless the count moves by at
        least `batch`. A new period is withheld while its count is above the largest released so far by 1 to
        k-1 (newcomers, who the summed series leave out until k of them are there: releasing them here would
        show them against those); a count at or below it (a member without data that hour, a departure) is
        released. One member leaving while another joins keeps the count: not seen here (docs/access.md).
        `beside`: as for `release_sum` (the metered hour's count of homes)."""
        with self._lock:
            state = self._series.setdefault(series, _Series())
            record = state.periods.get(period)
            if record is not None and abs(count - int(record.members[0].removeprefix("#"))) < self.batch:
                return record.value
            if count < self.min_members:
                return None if record is None else record.value
            if record is None and ((state.most and 0 < count - state.most < self.batch)
                                   or _near(count, beside, self.batch)):
                return None
            self._record(state, series, period, _Period([f"#{count}"], value))
            state.most = max(state.most, count)
            return value

    def _count(self, series: str, period: str) -> int | None:
        """How many homes a released period of `series` is over (None: not released)."""
        with self._lock:
            record = self._series.get(series, _Series()).periods.get(period)
        if record is None:
            return None
        first = record.members[0] if record.members else ""
        return int(first[1:]) if first.startswith("#") else len(record.members)

    def _complete(self, series: str, period: str, contributions: Mapping[str, float]) -> bool:
        """Whether a period may be released now: released already, or every home released before is in it."""
        with self._lock:
            state = self._series.get(series)
            return state is None or period in state.periods or state.seen <= set(contributions)

    def _record(self, state: _Series, series: str, period: str, record: _Period) -> None:
        state.periods[period] = record
        if len(state.periods) > self.keep_periods:
            for old in sorted(state.periods)[: len(state.periods) - self.keep_periods]:
                del state.periods[old]
        self._dirty = True

    # --- the public view's figures -----------------------------------------------------------------------
    def apply(self, body: dict[str, Any], *, entities: list[dict[str, Any]] | None = None,
              hours: list[datetime] | None = None, accounts: dict[str, Any] | None = None,
              now: datetime | None = None) -> dict[str, Any]:
        """The public view's answer (twin_service/web/_views.py public_view) with every figure released by the
        rule: `hourly` from each meter's hourly energy (`entities`, the twin's hourly counters, over `hours`),
        `settled` by the rows' member counts, `totals` over the members with data (`accounts`)."""
        now = now or datetime.now(UTC)
        if entities is not None and hours is not None and body.get("hourly"):
            per_meter = hourly_contributions(entities, hours)
            for k, row in enumerate(body["hourly"]):
                fresh = now - hours[k] < timedelta(hours=1) + self.settle
                for attr, figure in HOURLY_FIGURES.items():
                    series, contributions = f"hourly:{attr}", per_meter[attr][k]
                    if fresh and not self._complete(series, row["start"], contributions):
                        row[figure] = None  # not settled: a home released before has not reported it yet
                        continue
                    row[figure] = self.release_sum(series, row["start"], contributions,
                                                   beside=self._count("settled", row["start"]))
        for row in body.get("settled") or []:
            counted = _settled_count(accounts, row.get("start"))
            if counted is None or row.get("start") is None:
                continue
            values = {key: row.get(key) for key in SETTLED_FIGURES}
            released = self.release_counted("settled", str(row["start"]), counted, values,
                                            beside=self._count(f"hourly:{ENERGY_COUNTERS[0]}", str(row["start"])))
            row.update(released if isinstance(released, dict) else dict.fromkeys(SETTLED_FIGURES))
        if accounts is not None and body.get("totals") is not None:
            body["totals"] = self._totals(accounts)
        self.save()
        return body

    def _totals(self, accounts: dict[str, Any]) -> dict[str, Any] | None:
        period = accounts.get("period") or {}
        key = str(period.get("start") or period.get("label") or "period")
        hours = len(accounts.get("hourly") or [])
        rows = {str(m.get("member")): m for m in accounts.get("members", [])
                if isinstance(m.get("missingHours"), int) and m["missingHours"] < hours and m.get("member")}
        out: dict[str, Any] = {}
        for figure in TOTAL_FIGURES:
            values = {name: row[figure] for name, row in rows.items() if isinstance(row.get(figure), int | float)}
            if len(values) < len(rows):  # a figure some member lacks cannot be released over a set: withheld
                out[figure] = None
                continue
            out[figure] = self.release_sum(f"totals:{figure}", key, values, pin=False)
        return out if any(v is not None for v in out.values()) else None

    # --- the ledger file ---------------------------------------------------------------------------------
    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            for name, body in raw.get("series", {}).items():
                self._series[name] = _Series(set(body.get("seen", [])), {
                    period: _Period(list(p["members"]), p["value"]) for period, p in body.get("periods", {}).items()},
                    int(body.get("most", 0)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Starting empty would answer again over new sets: refuse to run rather than leak.
            raise RuntimeError(f"{self.path}: the public release ledger cannot be read ({exc}); move it away "
                               f"only if the public screen may answer its past periods afresh") from exc

    def save(self) -> None:
        """Write the ledger if it changed (`apply` does after each answer; callers of `release_*` call it)."""
        with self._lock:
            if self.path is None or not self._dirty:
                return
            body = {"series": {name: {"seen": sorted(s.seen), "most": s.most,
                                      "periods": {p: {"members": r.members, "value": r.value}
                                                  for p, r in sorted(s.periods.items())}}
                               for name, s in self._series.items()}}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(body, out)
            tmp.replace(self.path)
            self._dirty = False


def _near(count: int, other: int | None, batch: int) -> bool:
    """Two figures of one period over `count` and `other` homes differ by 1 to batch-1 homes."""
    return other is not None and 0 < abs(count - other) < batch


def _settled_count(accounts: dict[str, Any] | None, start: Any) -> int | None:
    for row in (accounts or {}).get("hourly", []):
        if row.get("start") == start and isinstance(row.get("members"), int):
            return int(row["members"])
    return None


def _hour(moment: str) -> datetime:
    return parse_time(moment).astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hourly_contributions(entities: Iterable[dict[str, Any]], hours: list[datetime],
                         attrs: Iterable[str] = ENERGY_COUNTERS) -> dict[str, list[dict[str, float]]]:
    """Each meter's energy per complete hour (kWh), by meter id: the public view's hourly sums before adding.

    The same reading of the twin's hourly counters as the page's `hourly_meter_energy` (its sums are these
    summed; tests/access/test_disclosure.py checks both agree): a meter's energy in hour h is the largest
    counter value of h minus that of h-1; a meter without both adds nothing to h."""
    attrs = tuple(attrs)
    index = {h.astimezone(UTC): k for k, h in enumerate(hours)}
    out: dict[str, list[dict[str, float]]] = {attr: [{} for _ in hours] for attr in attrs}
    for entity in entities:
        meter = str(entity.get("id", ""))
        for attr in attrs:
            by_hour: dict[datetime, float] = {}
            for item in (entity.get(attr) or {}).get("max") or []:
                value, start = item[0], item[1]
                if isinstance(value, int | float) and not isinstance(value, bool) and isinstance(start, str):
                    by_hour[_hour(start)] = float(value)
            for hour, value in by_hour.items():
                previous = by_hour.get(hour - timedelta(hours=1))
                if hour in index and previous is not None and value >= previous:
                    out[attr][index[hour]][meter] = value - previous
    return out


__all__ = ["MIN_MEMBERS", "PUBLIC_LEDGER", "PublicRelease", "hourly_contributions"]
