"""`energytwin community …`: member accounting and hourly sharing coefficients."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
import numpy as np
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from community import coefficient_file
from community.config import CommunityFileError, LoadedCommunity, load_community
from community.csv_import import CsvFormatError
from community.tariffs import PriceFileError
from fiware_client import BrokerError
from kernel.hours import year_hour_starts_utc

console = Console()
_COMMUNITY_OPTION = click.option(
    "-c",
    "--community",
    "community_path",
    type=click.Path(path_type=Path),
    default=Path("community.yaml"),
    show_default=True,
    envvar="ENERGYTWIN_COMMUNITY",
    help="The community file (YAML, see docs/community.md).",
)


class _UserError(click.ClickException):
    def show(self, file=None) -> None:  # one clean red block, no traceback
        console.print(f"[red]error:[/red] {self.message}")


def _load(path: Path) -> LoadedCommunity:
    try:
        return load_community(path)
    except CommunityFileError as exc:
        raise _UserError("invalid community file:\n" + "\n".join(exc.errors)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def community() -> None:
    """Energy communities: what each member consumed, self-consumed and saved, and the hourly sharing
    coefficients (beta) the distributor needs.

    \b
    Examples:
      energytwin community validate -c community.yaml
      energytwin community report --month 2026-10 -c community.yaml
      energytwin community coefficients --year 2027 --method optimal -c community.yaml
      energytwin community validate ES0021000000000001AB0FA001_2027.txt -c community.yaml

    The community file lists installations, members, tariffs and agreed rules; docs/community.md
    explains it field by field. Try it on community/examples/community.yaml.
    """


@community.command()
@_COMMUNITY_OPTION
@click.option("--month", help="Month to report, YYYY-MM (local time of the community).")
@click.option("--year", type=int, help="Whole year to report instead of a month.")
@click.option(
    "--coefficients",
    "coef_path",
    type=click.Path(exists=True, path_type=Path),
    help="Settle with this <CAU>_<YYYY>.txt (default: the installation's coefficients_file).",
)
@click.option(
    "--method",
    type=click.Choice(["fixed", "proportional", "optimal", "optimal-mean"]),
    help="What-if: settle with coefficients computed now from the period's actual data "
    "(ex post), instead of an agreed file.",
)
@click.option(
    "--chart",
    type=click.Path(path_type=Path),
    help="PNG chart path (default: community-report-<period>.png in the current folder).",
)
def report(
    community_path: Path,
    month: str | None,
    year: int | None,
    coef_path: Path | None,
    method: str | None,
    chart: Path | None,
) -> None:
    """Per-member and community totals for a month or a year, and a daily PNG chart.

    \b
    Per member: consumption, energy assigned (beta x generation), self-consumed, bought from the grid,
    surplus, money saved at its tariff, CO2 avoided and its tree equivalent; members with their own PV also
    get the household view V = P + L - T. Missing hours are listed, never filled.

    \b
    Examples:
      energytwin community report --month 2026-10
      energytwin community report --month 2026-10 --coefficients ES0021000000000001AB0FA001_2026.txt
      energytwin community report --year 2026 --method optimal      # what would optimal have given?
    """
    from community.accounting import build_report, write_chart
    from community.data import load_energy

    loaded = _load(community_path)
    c = loaded.community
    tz = ZoneInfo(c.timezone)
    start, end, label = _period(month, year, tz)
    try:
        with console.status(f"reading {label} hourly energy"):
            energy = load_energy(loaded, start, end)
        betas = {inst.id: _betas_for(loaded, inst, energy, coef_path, method) for inst in c.installations}
        result = build_report(loaded, energy, betas, f"{c.name} {label}")
    except (
        BrokerError,
        CsvFormatError,
        PriceFileError,
        coefficient_file.CoefficientFileError,
        ValueError,
    ) as exc:
        raise _UserError(str(exc)) from None
    _print_report(result, c.co2)
    chart = chart or Path(f"community-report-{label}.png")
    write_chart(result, chart)
    console.print(f"chart: {chart}")


def _betas_for(loaded, inst, energy, coef_path, method) -> np.ndarray:
    from community.sharing import SharingRules, shares_by_method

    rules = SharingRules.from_community(loaded.community)
    if method:
        consumption = np.nan_to_num(energy.import_kwh)
        return shares_by_method(method, consumption, np.nan_to_num(energy.generation_kwh[inst.id]), rules)
    path = coef_path or (loaded.resolve(inst.coefficients_file) if inst.coefficients_file else None)
    if path is None:
        console.print(f"[yellow]{inst.id}: no coefficients_file; settling with the fixed shares[/yellow]")
        return shares_by_method("fixed", energy.import_kwh, energy.generation_kwh[inst.id], rules)
    return _betas_from_file(loaded, inst, path, energy.hour_starts_utc)


def _betas_from_file(loaded, inst, path: Path, hours: np.ndarray) -> np.ndarray:
    c = loaded.community
    parsed = coefficient_file.read(path, expected_cups=[m.cups for m in c.members], cau=inst.cau)
    year = int(path.name.rsplit("_", 1)[1][:4])
    year_hours = year_hour_starts_utc(year, c.timezone)
    k = ((hours - year_hours[0]) // np.timedelta64(3600, "s")).astype(int)
    if k.min() < 0 or k.max() >= year_hours.size:
        raise ValueError(f"{path.name} covers {year}; the period reaches outside it")
    row = {cups: r for r, cups in enumerate(parsed.cups)}
    return np.array([parsed.beta[row[m.cups], k] for m in c.members])


def _period(month: str | None, year: int | str | None, tz: ZoneInfo) -> tuple[datetime, datetime, str]:
    if (month is None) == (year is None):
        raise _UserError("give --month YYYY-MM or --year YYYY")
    if month:
        try:
            y, m = (int(p) for p in month.split("-"))
            start = datetime(y, m, 1, tzinfo=tz)
        except ValueError:
            raise _UserError(f"--month {month!r}: expected YYYY-MM") from None
        end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=tz)
        return start, end, f"{y:04d}-{m:02d}"
    try:
        year = int(year)
    except ValueError:
        raise _UserError(f"{year!r}: expected YYYY") from None
    return datetime(year, 1, 1, tzinfo=tz), datetime(year + 1, 1, 1, tzinfo=tz), f"{year:04d}"


def _print_report(result, co2) -> None:
    table = Table(title=result.title, title_justify="left")
    for col in (
        "member",
        "C kWh",
        "E kWh",
        "A kWh",
        "I kWh",
        "X kWh",
        "A/E %",
        "saved EUR",
        "CO2 kg",
        "trees",
        "gap h",
        "V kWh",
    ):
        table.add_column(col, justify="left" if col == "member" else "right")
    for row in [*result.members, result.community]:
        table.add_row(
            row.label,
            f"{row.consumption_kwh:.1f}",
            f"{row.assigned_kwh:.1f}",
            f"{row.self_consumed_kwh:.1f}",
            f"{row.grid_import_kwh:.1f}",
            f"{row.surplus_kwh:.1f}",
            f"{100 * row.self_consumption_ratio:.1f}",
            f"{row.savings_eur:.2f}",
            f"{row.co2_avoided_kg:.1f}",
            f"{row.trees:.2f}",
            str(row.missing_hours),
            "" if row.household_kwh is None else f"{row.household_kwh:.1f}",
            end_section=row is result.members[-1],
        )
    console.print(table)
    console.print(
        "C consumed, E assigned (beta x generation), A self-consumed, I bought from the grid, X surplus, "
        "V = P + L - T household use (own PV); gap h = member-hours left out."
    )
    console.print(
        f"CO2 factor {co2.factor_kg_per_kwh} kg/kWh ({co2.factor_source}); "
        f"a tree absorbs {co2.tree_kg_co2_per_year} kg CO2 per year."
    )
    for note in result.notes:
        console.print(f"note: {note}")
    if result.gaps:
        console.print(f"[yellow]{len(result.gaps)} gap(s): these hours are left out of the totals[/yellow]")
        for gap in result.gaps[:20]:
            console.print(f"  {gap.describe()}")
        if len(result.gaps) > 20:
            console.print(f"  ... and {len(result.gaps) - 20} more")


@community.command()
@_COMMUNITY_OPTION
@click.option("--year", type=int, required=True, help="Year the coefficients are for.")
@click.option(
    "--method",
    type=click.Choice(["fixed", "proportional", "optimal", "optimal-mean"]),
    default="optimal",
    show_default=True,
    help="Method whose coefficients are written to the file.",
)
@click.option("--installation", help="Installation id or CAU (needed when the community has several).")
@click.option(
    "--history",
    "history_period",
    help="History to learn expected consumption and generation from: YYYY or YYYY-MM "
    "(default: the year before).",
)
@click.option(
    "-o",
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for <CAU>_<YYYY>.txt.",
)
def coefficients(
    community_path: Path,
    year: int,
    method: str,
    installation: str | None,
    history_period: str | None,
    out_dir: Path,
) -> None:
    """Hourly sharing coefficients for a year, written as the distributor's <CAU>_<YYYY>.txt.

    \b
    Expected consumption (hour-of-week profile of each member's history) and generation (pvlib clear sky
    scaled to the history, when the installation has location and kWp) feed every method:
      fixed         the agreement's fixed shares (equal, by investment, or explicit)
      proportional  each hour, in proportion to each member's expected consumption
      optimal       the LP that maximises the community's expected self-consumption over past hours like
                    each hour (every week of the history at the same weekday and hour: its spread, not its mean)
      optimal-mean  the same LP on the mean profile only (overfits the mean; kept for comparison)
    All respect the rules (minimum share, cap, energy-poverty reserve; fairness for optimal). The file has
    six decimals with a decimal comma and every hour adds up to exactly 1. A table compares the methods.

    \b
    Examples:
      energytwin community coefficients --year 2027 --method optimal
      energytwin community coefficients --year 2027 --method proportional --history 2025 -o out/
      energytwin community coefficients --year 2027 --history 2026-10   # one month of history
    """
    from community.accounting import member_prices
    from community.data import load_energy
    from community.planning import PlanningError, compare_methods, expected_for
    from community.sharing import InfeasibleRules, SharingRules

    loaded = _load(community_path)
    c = loaded.community
    tz = ZoneInfo(c.timezone)
    try:
        inst = c.installation(installation)
    except KeyError as exc:
        raise _UserError(exc.args[0]) from None
    history_period = history_period or str(year - 1)
    if "-" in history_period:
        h_start, h_end, hist = _period(history_period, None, tz)
    else:
        h_start, h_end, hist = _period(None, int(history_period), tz)
    target = year_hour_starts_utc(year, c.timezone)
    rules = SharingRules.from_community(c)
    methods = tuple(dict.fromkeys(("fixed", "proportional", "optimal-mean", "optimal", method)))
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"reading {hist} history", total=None)
        try:
            history = load_energy(loaded, h_start, h_end)
            expected = expected_for(loaded, inst, history, target)
            prices = member_prices(loaded, target, strict=False)
            outcomes = compare_methods(
                expected,
                rules,
                c.timezone,
                prices,
                methods,
                progress=lambda msg: progress.update(task, description=msg),
            )
        except (BrokerError, CsvFormatError, PriceFileError, PlanningError, InfeasibleRules) as exc:
            raise _UserError(str(exc)) from None
    if history.gaps:
        hours = sum(g.hours for g in history.gaps)
        console.print(
            f"[yellow]history {hist}: {len(history.gaps)} gap(s), {hours} member-hours left out "
            "of the profiles[/yellow]"
        )
    for note in (*expected.notes, *prices.notes):
        console.print(f"note: {note}")
    chosen = outcomes[method]
    if chosen.violations:
        raise _UserError(f"{method} coefficients break the rules: {chosen.violations[0]}")
    micro = coefficient_file.round_coefficients(
        chosen.beta, rules.lower, rules.upper, rules.reserve, rules.poor
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = coefficient_file.write(
        out_dir / coefficient_file.file_name(inst.cau, year), [m.cups for m in c.members], micro
    )
    _print_comparison(outcomes, c, year, method)
    console.print(f"wrote {path} ({len(c.members)} members x {target.size} hours, method {method})")


def _print_comparison(outcomes, c, year: int, chosen: str) -> None:
    table = Table(title=f"Methods on the expected (mean-profile) data for {year}", title_justify="left")
    table.add_column("", justify="left")
    for name in outcomes:
        table.add_column(name + (" *" if name == chosen else ""), justify="right")
    table.add_row("self-consumption %", *(f"{100 * o.self_consumption_ratio:.1f}" for o in outcomes.values()))
    table.add_row("self-consumed kWh", *(f"{o.self_consumed_kwh:,.0f}" for o in outcomes.values()))
    table.add_row("surplus kWh", *(f"{o.surplus_kwh:,.0f}" for o in outcomes.values()))
    if all(o.scenario_self_consumption_ratio is not None for o in outcomes.values()):
        table.add_row(
            "self-cons. % over past hours",
            *(f"{100 * o.scenario_self_consumption_ratio:.1f}" for o in outcomes.values()),
        )
    table.rows[-1].end_section = True
    for i, m in enumerate(c.members):
        table.add_row(f"{m.id} saves EUR", *(f"{o.savings_eur[i]:.2f}" for o in outcomes.values()))
    table.add_row("community saves EUR", *(f"{o.savings_eur.sum():.2f}" for o in outcomes.values()))
    console.print(table)


@community.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path), required=False)
@_COMMUNITY_OPTION
@click.option("--year", type=int, help="Expected year (default: from the file name).")
def validate(path: Path | None, community_path: Path, year: int | None) -> None:
    """Check a community file, or a coefficient file against it, with line-numbered errors.

    \b
    Coefficient file checks: name <CAU>_<YYYY>.txt, each line CUPS;HHHH;0,000000, every hour 0001..8760
    (8784 in leap years) in order, each CUPS one block, every hour adding up to exactly 1, and the CUPS
    being exactly the community's members.

    \b
    Examples:
      energytwin community validate                    # the community file (community.yaml)
      energytwin community validate ES0021000000000001AB0FA001_2027.txt
    """
    if path is None or path.suffix in (".yaml", ".yml"):
        loaded = _load(path or community_path)
        c = loaded.community
        console.print(
            f"[green]ok[/green] {loaded.path}: {len(c.members)} members, "
            f"{len(c.installations)} installation(s)"
        )
        return
    expected_cups = None
    cau = None
    if community_path.exists():
        c = _load(community_path).community
        expected_cups = [m.cups for m in c.members]
        caus = {i.cau for i in c.installations}
        stem_cau = path.name.rsplit("_", 1)[0]
        cau = stem_cau if stem_cau in caus else min(caus) if len(caus) == 1 else None
    try:
        parsed = coefficient_file.read(path, year=year, expected_cups=expected_cups, cau=cau)
    except coefficient_file.CoefficientFileError as exc:
        for line in exc.errors:
            console.print(f"[red]{line}[/red]")
        sys.exit(1)
    console.print(
        f"[green]ok[/green] {path.name}: {len(parsed.cups)} CUPS x {parsed.beta_micro.shape[1]} hours, "
        "every hour adds up to 1,000000"
    )


@community.command("import-distributor")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write one hourly CSV per CUPS here (name them in community.yaml's `csv:`).")
@click.option("--to-twin", "broker_url", metavar="BROKER_URL",
              help="Write the hours into the twin's history instead (NGSI-LD broker, e.g. http://127.0.0.1:1026): "
                   "the member then reads `distributor: true` in community.yaml.")
@click.option("--tenant", help="NGSILD-Tenant for --to-twin (the community file's twin.tenant).")
def import_distributor(files: tuple[Path, ...], out_dir: Path | None, broker_url: str | None,
                       tenant: str | None) -> None:
    """Import the distributor's hourly CSVs (CUPS;Fecha;Hora;AE_kWh[;AS_kWh][;REAL/ESTIMADO], Datadis and
    e-distribución downloads) for members without a meter.

    \b
    DST days (23 hours in March, 25 in October) and duplicate rows are handled; every error names its line and
    nothing is written while any line is wrong. Examples:
      energytwin community import-distributor curva-ana.csv curva-bernat.csv --out community/hourly
      energytwin community import-distributor curva-ana.csv --to-twin http://127.0.0.1:1026 --tenant energytwin
    With --to-twin each CUPS becomes urn:ngsi-ld:ThreePhaseAcMeasurement:<CUPS> with an hourly kWh counter
    (observedAt per hour); a later month's file continues it, a file overlapping stored hours is refused.
    """
    from community.distributor_import import DistributorFileError, read_distributor_csv, write_hourly_csvs

    if (out_dir is None) == (broker_url is None):
        raise click.UsageError("give exactly one of --out DIR or --to-twin BROKER_URL")
    for path in files:
        try:
            imported = read_distributor_csv(path)
        except DistributorFileError as exc:
            raise click.ClickException(f"{path}: {len(exc.errors)} error(s), nothing written:\n"
                                       + "\n".join(exc.errors[:50])) from None
        if out_dir is not None:
            for written in write_hourly_csvs(imported, out_dir):
                cups = written.stem
                click.echo(f"{path} -> {written}: {len(imported.hours[cups])} hours of {cups}")
        else:
            _import_to_twin(imported, path, broker_url, tenant)
        counts = imported.counts
        click.echo(f"  measured {counts['measured']}, estimated {counts['estimated']}, "
                   f"duplicates dropped {counts['duplicates']}")


def _import_to_twin(imported, path: Path, broker_url: str, tenant: str | None) -> None:  # type: ignore[no-untyped-def]
    from community.distributor_history import HistoryOverlap, write_to_twin
    from fiware_client import BrokerError, NgsiLdClient

    try:
        with NgsiLdClient(broker_url, tenant=tenant) as client:
            written = write_to_twin(imported, client, source=path.name)
    except HistoryOverlap as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    except BrokerError as exc:
        raise click.ClickException(f"{path}: the broker at {broker_url} refused the history: {exc}") from None
    for w in written:
        click.echo(f"{path} -> {broker_url} {w.entity_id}: {w.hours} hours {w.first_hour:%Y-%m-%d %H:%M} .. "
                   f"{w.last_hour:%Y-%m-%d %H:%M} UTC ({w.estimated_hours} estimated), counter from "
                   f"{w.continued_from_kwh:g} kWh")


@community.command()
@_COMMUNITY_OPTION
@click.option("--current", "current_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="The coefficient file in force (<CAU>_<YYYY>.txt).")
@click.option("--year", type=int, help="Year of the next file (default: the current file's).")
@click.option("--history", "history_period", help="History to learn from: YYYY or YYYY-MM (default: the year before).")
@click.option("--method", type=click.Choice(["fixed", "proportional", "optimal", "optimal-mean"]),
              default="optimal", show_default=True)
@click.option("--installation", help="Installation id or CAU (needed when the community has several).")
@click.option("--approve", is_flag=True, help="The manager approves: write the next distributor file.")
@click.option("-o", "--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder for the next <CAU>_<YYYY>.txt.")
def revise(community_path: Path, current_path: Path, year: int | None, history_period: str | None, method: str,
           installation: str | None, approve: bool, out_dir: Path) -> None:
    """Recompute the coefficients from the latest history and compare them with the agreement in force, member
    by member (self-consumed kWh and EUR before/after); the next distributor file is written only with --approve.

    \b
    Examples:
      energytwin community revise --current ES..A001_2027.txt --history 2026-10           # compare only
      energytwin community revise --current ES..A001_2027.txt --history 2026-10 --approve -o out/
    """
    from community.accounting import member_prices
    from community.data import load_energy
    from community.planning import PlanningError, expected_for
    from community.revision import revise as compute_revision
    from community.sharing import InfeasibleRules, SharingRules

    loaded = _load(community_path)
    c = loaded.community
    tz = ZoneInfo(c.timezone)
    try:
        inst = c.installation(installation)
    except KeyError as exc:
        raise _UserError(exc.args[0]) from None
    cups = [m.cups for m in c.members]
    try:
        current = coefficient_file.read(current_path, year=year, expected_cups=cups, cau=inst.cau)
    except coefficient_file.CoefficientFileError as exc:
        raise _UserError("\n".join(exc.errors)) from None
    year = year or int(current_path.stem.rsplit("_", 1)[1])
    history_period = history_period or str(year - 1)
    if "-" in history_period:
        h_start, h_end, _ = _period(history_period, None, tz)
    else:
        h_start, h_end, _ = _period(None, int(history_period), tz)
    target = year_hour_starts_utc(year, c.timezone)
    order = [current.cups.index(x) for x in cups]
    rules = SharingRules.from_community(c)
    try:
        history = load_energy(loaded, h_start, h_end)
        expected = expected_for(loaded, inst, history, target)
        prices = member_prices(loaded, target, strict=False)
        result = compute_revision(current.beta[order], expected, rules, c.timezone, prices, method)
    except (BrokerError, CsvFormatError, PriceFileError, PlanningError, InfeasibleRules, ValueError) as exc:
        raise _UserError(str(exc)) from None
    table = Table(title=f"Revision for {year}: agreement in force vs {method} on {history_period}'s history",
                  title_justify="left")
    for col in ("member", "self-consumed kWh now", f"{method}", "saves EUR now", f"{method} ", "change EUR"):
        table.add_column(col, justify="right" if col != "member" else "left")
    now, new = result.current, result.proposed
    for i, m in enumerate(c.members):
        table.add_row(m.id, f"{now.self_consumed_kwh[i]:,.1f}", f"{new.self_consumed_kwh[i]:,.1f}",
                      f"{now.savings_eur[i]:.2f}", f"{new.savings_eur[i]:.2f}",
                      f"{new.savings_eur[i] - now.savings_eur[i]:+.2f}")
    gen = result.generation_kwh or 1.0
    table.add_row("community", f"{now.self_consumed_kwh.sum():,.1f} ({100 * now.self_consumed_kwh.sum() / gen:.1f} %)",
                  f"{new.self_consumed_kwh.sum():,.1f} ({100 * new.self_consumed_kwh.sum() / gen:.1f} %)",
                  f"{now.savings_eur.sum():.2f}", f"{new.savings_eur.sum():.2f}",
                  f"{new.savings_eur.sum() - now.savings_eur.sum():+.2f}")
    console.print(table)
    if new.violations:
        raise _UserError(f"the {method} coefficients break the rules: {new.violations[0]}")
    if not approve:
        console.print("not written: the manager approves with --approve")
        return
    micro = coefficient_file.round_coefficients(new.beta, rules.lower, rules.upper, rules.reserve, rules.poor)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = coefficient_file.write(out_dir / coefficient_file.file_name(inst.cau, year), cups, micro)
    console.print(f"approved: wrote {path}")
