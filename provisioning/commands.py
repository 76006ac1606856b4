"""`energytwin provision INVENTORY.yaml`: make the IoT Agent and the broker match an inventory file."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fiware_client import FiwareError
from kernel import ports
from provisioning.inventory import Inventory, InventoryError, load_inventory
from provisioning.sync import Action, Plan, Provisioner

_VERBS = ("create", "update", "replace", "delete", "unchanged")
_PLAN_ROWS = 200  # beyond this many changes the plan table shows the first ones and a count


@click.command()
@click.argument("inventory", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--agent-url", default=f"http://127.0.0.1:{ports.AGENT_NORTH_PORT}", show_default=True,
              envvar="ENERGYTWIN_AGENT_URL", help="IoT Agent north (provisioning) API.")
@click.option("--broker-url", default=f"http://127.0.0.1:{ports.BROKER_PORT}", show_default=True,
              envvar="ENERGYTWIN_BROKER_URL", help="NGSI-LD broker (for subscriptions).")
@click.option("--dry-run", is_flag=True, help="Print the plan as a table; change nothing.")
@click.option("--prune", is_flag=True, help="Also delete groups, devices and our subscriptions not listed.")
@click.option("--check", is_flag=True,
              help="Only check that the agent writes to --broker-url with the project's @context (a probe device "
                   "in the first tenant, removed afterwards); exit 1 with the likely cause when it does not.")
def provision(inventory: Path, agent_url: str, broker_url: str, dry_run: bool, prune: bool, check: bool) -> None:
    """Make the agent and broker match INVENTORY (YAML; schema in docs/provisioning.md).

    \b
    Creates what is missing, updates what differs, leaves what matches; a second run changes nothing.
    Works against the embedded stack and the FIWARE one alike (public APIs only).
    \b
    Examples:
      energytwin provision provisioning/examples/site.yaml --dry-run
      energytwin provision site.yaml --agent-url http://iot-agent:4041 --broker-url http://orion:1026
      energytwin provision site.yaml --check    # is IOTA_JSON_LD_CONTEXT set? does the agent reach the broker?
    """
    console = Console(width=None if sys.stdout.isatty() else 160)  # logs and CI: no wrapped ids
    try:
        wanted = load_inventory(inventory)
    except InventoryError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        raise SystemExit(2) from None
    if check:
        _check(agent_url, broker_url, wanted)
        return
    try:
        with Provisioner(agent_url, broker_url) as provisioner:
            plan = provisioner.plan(wanted, prune=prune)
            if dry_run:
                console.print(plan_table(plan))
                console.print(summary_table(plan, title="Plan (dry run: nothing changed)"))
                return
            failures = apply(plan, console)
            fiware_agent = "energytwin" not in provisioner.north(wanted.tenants[0]).about()
    except FiwareError as exc:
        _refused(exc, agent_url, broker_url)
    console.print(summary_table(plan, failures=failures))
    if fiware_agent and plan.changes():
        # provisioning succeeds even when that agent cannot write a single reading (IOTA_JSON_LD_CONTEXT unset)
        click.echo("note: the FIWARE agent accepted the devices; `--check` verifies it can write readings to the "
                   "broker with the project's @context")
    if failures:
        for action, error in failures:
            click.echo(f"failed: {action.verb} {action.kind} {action.key}: {error}", err=True)
        raise SystemExit(1)


def _check(agent_url: str, broker_url: str, wanted: Inventory) -> None:
    from provisioning.check import check_agent_writes

    try:
        result = check_agent_writes(agent_url, broker_url, wanted.tenants[0])
    except FiwareError as exc:
        _refused(exc, agent_url, broker_url)
    click.echo(f"{'ok' if result.ok else 'warning'}: {result.agent}", err=not result.ok)
    for finding in result.findings:
        click.echo(f"  {finding}", err=not result.ok)
    if not result.ok:
        raise SystemExit(1)


def _refused(exc: FiwareError, agent_url: str, broker_url: str) -> None:
    """Exit 1 with what went wrong: no answer at all (status None), or what the service said."""
    if exc.status is None:
        click.echo(f"error: cannot reach the agent ({agent_url}) or broker ({broker_url}): {exc}", err=True)
    else:
        click.echo(f"error: {exc}", err=True)
    raise SystemExit(1) from None


def apply(plan: Plan, console: Console) -> list[tuple[Action, str]]:
    """Run every change with a progress bar; a failure is recorded and the rest still runs."""
    changes = plan.changes()
    failures: list[tuple[Action, str]] = []
    total = sum(action.weight for action in changes)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False, disable=not changes or not sys.stdout.isatty()
                  and total < 50) as progress:
        task = progress.add_task("provisioning", total=total)
        for action in changes:
            progress.update(task, description=f"{action.verb} {action.kind} {action.key}"[:60])
            try:
                assert action.run is not None
                action.run()
            except FiwareError as exc:
                failures.append((action, str(exc)))
            progress.advance(task, action.weight)
    return failures


def plan_table(plan: Plan) -> Table:
    """The changes, one row each (unchanged resources are only counted)."""
    table = Table(title="Provisioning plan")
    for column in ("action", "kind", "tenant", "resource", "why"):
        table.add_column(column)
    changes = plan.changes()
    for action in changes[:_PLAN_ROWS]:
        table.add_row(action.verb, action.kind, action.tenant, action.key, action.detail)
    if len(changes) > _PLAN_ROWS:
        table.add_row("…", "", "", f"{len(changes) - _PLAN_ROWS} more changes", "")
    if not changes:
        table.add_row("—", "", "", "nothing to change", "")
    return table


def summary_table(plan: Plan, title: str = "Summary",
                  failures: list[tuple[Action, str]] | None = None) -> Table:
    """Counts per kind and action, failures in their own column."""
    counts = plan.counts()
    failed: dict[str, int] = {}
    for action, _ in failures or []:
        failed[action.kind] = failed.get(action.kind, 0) + action.weight
    table = Table(title=title)
    table.add_column("kind")
    for verb in _VERBS:
        table.add_column(verb, justify="right")
    table.add_column("failed", justify="right")
    for kind in ("group", "device", "subscription"):
        table.add_row(kind, *(str(counts.get((kind, verb), 0)) for verb in _VERBS), str(failed.get(kind, 0)))
    return table
