"""The community file: installations, members, tariffs and the rules they agreed (YAML, validated).

Errors name the line of the file they are about (`community.yaml:14: members[2].cups: ...`), because the people
who edit this file are community treasurers, not programmers. Relative paths in the file are relative to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from community.co2 import SPAIN_PENINSULA_KG_PER_KWH, TREE_KG_CO2_PER_YEAR
from kernel.yaml_lines import YamlSyntaxError, dotted, line_of, load_with_lines

# CUPS: "ES" + 16 digits + 2 control letters, optionally 2 more characters for the border point (20 or 22 chars).
CUPS_RE = re.compile(r"^ES\d{16}[A-Z]{2}([0-9A-Z]{2})?$")
# CAU (installation code): the CUPS of the installation + "A" + 3 digits (docs/community.md, "Legal frame (Spain)").
CAU_RE = re.compile(r"^ES\d{16}[A-Z]{2}([0-9A-Z]{2})?A\d{3}$")


class CommunityFileError(ValueError):
    """The community file is invalid; `errors` are "file:line: where: what" strings."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TwinSettings(_Strict):
    """Where the meters' history is read: the broker's own NGSI-LD temporal API (embedded broker), Mintaka
    (Orion-LD's TRoE history, the same temporal API) or QuantumLeap (docs/production.md, History)."""

    url: str = "http://localhost:1026"
    tenant: str | None = None  # NGSILD-Tenant (= fiware-service of the meters; QuantumLeap's Fiware-Service)
    max_sample_gap_min: float = Field(15.0, gt=0)  # a longer silence between readings makes a gap
    history: Literal["ngsi-ld", "mintaka", "quantumleap"] = "ngsi-ld"
    history_url: str | None = None  # the history server: e.g. http://quantumleap:8668 or http://mintaka:9090
    quantumleap_url: str | None = None  # the earlier spelling of history_url for history: quantumleap
    service_path: str = "/"  # QuantumLeap's Fiware-ServicePath

    @model_validator(mode="after")
    def _history_server_needs_url(self) -> TwinSettings:
        if self.history_url and self.quantumleap_url and self.history_url != self.quantumleap_url:
            raise ValueError("history_url and quantumleap_url name different servers; keep history_url only")
        if self.history != "ngsi-ld" and not self.history_server_url:
            example = "http://quantumleap:8668" if self.history == "quantumleap" else "http://mintaka:9090"
            raise ValueError(f"history: {self.history} needs history_url (or quantumleap_url), e.g. {example}")
        return self

    @property
    def history_server_url(self) -> str | None:
        """The URL of the history server for history: mintaka | quantumleap."""
        return self.history_url or self.quantumleap_url


class Tariff(_Strict):
    """What a member pays for imported energy and gets for surplus."""

    import_price_eur_per_kwh: float | None = Field(
        None, ge=0
    )  # energy term + tolls + charges avoided per kWh
    import_prices_file: Path | None = (
        None  # hourly prices CSV (hour_start,price_eur_per_kwh), overrides the flat one
    )
    surplus_price_eur_per_kwh: float = Field(0.0, ge=0)
    # simplified: surplus value subtracted from the month's energy bill, never beyond it (RD 244/2019, simplified compensation);
    # sale: surplus sold on the market without that cap.
    compensation: Literal["simplified", "sale"] = "simplified"

    @model_validator(mode="after")
    def _has_a_price(self) -> Tariff:
        if self.import_price_eur_per_kwh is None and self.import_prices_file is None:
            raise ValueError("give import_price_eur_per_kwh or import_prices_file")
        return self


class Installation(_Strict):
    """A shared generation installation: its CAU and its generation meter (or an hourly CSV)."""

    id: str
    cau: str
    meter: str | None = None  # device_id of the generation meter in the twin
    csv: Path | None = None  # hourly CSV instead of the twin (generation_kwh column)
    peak_power_kwp: float | None = Field(None, gt=0)
    latitude_deg: float | None = Field(None, ge=-90, le=90)
    longitude_deg: float | None = Field(None, ge=-180, le=180)
    tilt_deg: float = Field(30.0, ge=0, le=90)
    azimuth_deg: float = Field(180.0, ge=0, lt=360)  # 180 = south
    clear_sky_index: float | None = Field(None, gt=0, le=1.2)  # used when there is no history to fit it
    coefficients_file: Path | None = None  # the agreed <CAU>_<YYYY>.txt the report settles with

    @field_validator("cau")
    @classmethod
    def _cau(cls, value: str) -> str:
        if not CAU_RE.match(value):
            raise ValueError(
                f"{value!r} is not a CAU (CUPS of 20/22 characters + 'A' + 3 digits, 24 or 26 chars)"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Installation:
        if (self.meter is None) == (self.csv is None):
            raise ValueError("give exactly one of meter (a twin device_id) or csv (an hourly file)")
        return self

    @property
    def can_model_clear_sky(self) -> bool:
        return None not in (self.peak_power_kwp, self.latitude_deg, self.longitude_deg)


class Member(_Strict):
    """A consumer of the community: its supply point (CUPS), where its consumption comes from, its tariff."""

    id: str
    cups: str
    meter: str | None = None  # device_id of the member's consumption meter in the twin
    csv: Path | None = None  # hourly CSV import (docs/community.md)
    # True: the distributor's hourly kWh of this CUPS, imported into the twin's history
    # (`energytwin community import-distributor --to-twin`, community/distributor_history.py)
    distributor: bool = False
    own_installation_meter: str | None = None  # the member's own PV meter (household view V = P + L - T)
    tariff: str
    energy_poverty: bool = False
    investment_eur: float | None = Field(None, ge=0)
    share: float | None = Field(None, ge=0, le=1)  # an explicit fixed share
    min_share: float | None = Field(None, ge=0, le=1)  # overrides rules.min_share for this member
    max_share: float | None = Field(None, ge=0, le=1)  # overrides rules.max_share for this member

    @field_validator("cups")
    @classmethod
    def _cups(cls, value: str) -> str:
        if not CUPS_RE.match(value):
            raise ValueError(
                f"{value!r} is not a CUPS ('ES' + 16 digits + 2 letters, optionally 2 more characters)"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Member:
        if [self.meter is not None, self.csv is not None, self.distributor].count(True) != 1:
            raise ValueError("give exactly one of meter (a twin device_id), csv (an hourly file) or "
                             "distributor: true (the distributor's data in the twin's history)")
        return self


class Rules(_Strict):
    """The sharing rules the members agreed (docs/community.md, "Community rules on top of the law"); they bind every method."""

    fixed_shares: Literal["equal", "investment", "share"] = "equal"  # basis of the fixed method
    min_share: float = Field(0.0, ge=0, le=1)  # every member's beta, every hour
    max_share: float = Field(1.0, gt=0, le=1)  # cap on every member's beta, every hour
    energy_poverty_reserve: float = Field(
        0.0, ge=0, lt=1
    )  # sum of the energy-poverty members' beta, every hour
    # Each member's share of the year's generation stays within (1 +/- tolerance) x its fixed share (optimal only).
    fairness_tolerance: float | None = Field(None, ge=0)


class Co2Settings(_Strict):
    """Grid emission factor and the tree equivalent (docs/community.md, "CO₂ factors")."""

    factor_kg_per_kwh: float = Field(SPAIN_PENINSULA_KG_PER_KWH, ge=0)
    factor_source: str = "RITE 2014 official factor, Spain peninsula (CTE DB-HE)"
    tree_kg_co2_per_year: float = Field(TREE_KG_CO2_PER_YEAR, gt=0)


class Community(_Strict):
    """A whole community file."""

    name: str
    timezone: str = "Europe/Madrid"
    twin: TwinSettings = TwinSettings()
    co2: Co2Settings = Co2Settings()
    tariffs: dict[str, Tariff]
    installations: list[Installation] = Field(min_length=1)
    members: list[Member] = Field(min_length=1)
    rules: Rules = Rules()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Madrid)"
            ) from None
        return value

    def member(self, member_id: str) -> Member:
        for m in self.members:
            if m.id == member_id:
                return m
        raise KeyError(f"no member {member_id!r}; members: {', '.join(m.id for m in self.members)}")

    def installation(self, installation_id: str | None) -> Installation:
        if installation_id is None:
            if len(self.installations) > 1:
                ids = ", ".join(i.id for i in self.installations)
                raise KeyError(
                    f"the community has several installations ({ids}); choose one with --installation"
                )
            return self.installations[0]
        for inst in self.installations:
            if inst.id == installation_id or inst.cau == installation_id:
                return inst
        raise KeyError(
            f"no installation {installation_id!r}; have: {', '.join(i.id for i in self.installations)}"
        )


@dataclass(frozen=True)
class LoadedCommunity:
    """A validated community and the file it came from (relative paths resolve against its folder)."""

    community: Community
    path: Path

    def resolve(self, relative: Path) -> Path:
        return relative if relative.is_absolute() else (self.path.parent / relative)


def load_community(path: str | Path) -> LoadedCommunity:
    """Read and validate a community file; raise CommunityFileError with every problem and its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommunityFileError([f"{path}: cannot read: {exc.strerror}"]) from None
    return LoadedCommunity(parse_community(text, str(path)), path)


def parse_community(text: str, filename: str = "<community>") -> Community:
    """Validate YAML text as a community file (see `load_community`)."""
    try:
        data, lines = load_with_lines(text, filename)
    except YamlSyntaxError as exc:
        raise CommunityFileError([str(exc)]) from None
    if not isinstance(data, dict):
        raise CommunityFileError(
            [f"{filename}:1: expected a mapping with name, tariffs, installations, members"]
        )
    try:
        community = Community.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
            errors.append(f"{filename}:{line_of(lines, loc)}: {_where(loc)}: {_message(err)}")
        raise CommunityFileError(errors) from None
    errors = [
        f"{filename}:{line_of(lines, loc)}: {_where(loc)}: {msg}" for loc, msg in _cross_checks(community)
    ]
    if errors:
        raise CommunityFileError(errors)
    return community


def _cross_checks(c: Community) -> list[tuple[tuple, str]]:
    """Checks that span several entries: unique ids, known tariffs, rules that some beta can satisfy."""
    problems: list[tuple[tuple, str]] = []
    seen: dict[str, int] = {}
    seen_cups: dict[str, int] = {}
    for i, m in enumerate(c.members):
        if m.id in seen:
            problems.append(
                (("members", i, "id"), f"duplicate member id {m.id!r} (also members[{seen[m.id]}])")
            )
        seen.setdefault(m.id, i)
        if m.cups in seen_cups:
            problems.append(
                (("members", i, "cups"), f"duplicate CUPS {m.cups} (also members[{seen_cups[m.cups]}])")
            )
        seen_cups.setdefault(m.cups, i)
        if m.tariff not in c.tariffs:
            known = ", ".join(sorted(c.tariffs)) or "none defined"
            problems.append((("members", i, "tariff"), f"unknown tariff {m.tariff!r} (tariffs: {known})"))
        if c.rules.fixed_shares == "investment" and m.investment_eur is None:
            problems.append(
                (("members", i), "rules.fixed_shares is 'investment' but investment_eur is missing")
            )
        if c.rules.fixed_shares == "share" and m.share is None:
            problems.append((("members", i), "rules.fixed_shares is 'share' but share is missing"))
    inst_ids = [i.id for i in c.installations]
    for k, inst in enumerate(c.installations):
        if inst_ids.count(inst.id) > 1:
            problems.append((("installations", k, "id"), f"duplicate installation id {inst.id!r}"))
    n = len(c.members)
    lows = [member_bounds(c, m)[0] for m in c.members]
    highs = [member_bounds(c, m)[1] for m in c.members]
    if sum(lows) > 1 + 1e-12:
        problems.append(
            (("rules", "min_share"), f"the minimum shares add up to {sum(lows):.4f} > 1 for {n} members")
        )
    if sum(highs) < 1 - 1e-12:
        problems.append((("rules", "max_share"), f"the caps add up to {sum(highs):.4f} < 1 for {n} members"))
    for i, m in enumerate(c.members):
        lo, hi = member_bounds(c, m)
        if lo > hi:
            problems.append((("members", i), f"minimum share {lo} is above the cap {hi}"))
    reserve = c.rules.energy_poverty_reserve
    poor = [m for m in c.members if m.energy_poverty]
    if reserve > 0:
        if not poor:
            problems.append(
                (("rules", "energy_poverty_reserve"), "a reserve is set but no member is energy_poverty")
            )
        elif sum(member_bounds(c, m)[1] for m in poor) < reserve - 1e-12:
            problems.append(
                (
                    ("rules", "energy_poverty_reserve"),
                    f"the energy-poverty members' caps cannot hold {reserve}",
                )
            )
        elif reserve + sum(member_bounds(c, m)[0] for m in c.members if not m.energy_poverty) > 1 + 1e-12:
            problems.append(
                (("rules", "energy_poverty_reserve"), "reserve + other members' minimum shares exceed 1")
            )
    if c.rules.fixed_shares == "share":
        total = sum(m.share or 0.0 for m in c.members)
        if abs(total - 1) > 1e-6:
            problems.append(
                (("rules", "fixed_shares"), f"members' share values add up to {total:.6f}, not 1")
            )
    if c.rules.fixed_shares == "investment" and sum(m.investment_eur or 0.0 for m in c.members) <= 0:
        problems.append((("rules", "fixed_shares"), "the members' investment_eur add up to 0"))
    return problems


def member_bounds(c: Community, m: Member) -> tuple[float, float]:
    """(minimum, cap) of a member's hourly beta: its own override or the community rule."""
    lo = m.min_share if m.min_share is not None else c.rules.min_share
    hi = m.max_share if m.max_share is not None else c.rules.max_share
    return lo, hi








def _where(loc: tuple) -> str:
    return dotted(loc, "(top level)")


def _message(err: dict[str, Any]) -> str:
    msg = err["msg"]
    msg = msg.removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling against docs/community.md)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    return msg
