"""The `energytwin` command: one entry point that wires each part's subcommands (they live with their part)."""

from __future__ import annotations

import logging
from typing import ClassVar

import click

from energytwin import __version__


class _LazyGroup(click.Group):
    """Imports a subcommand's module only when it runs, so `--help` is instant and one broken part does not
    take the whole CLI down."""

    _commands: ClassVar[dict[str, tuple[str, str, str]]] = {
        "up": ("energytwin.commands", "up", "Run the embedded stack on the production ports."),
        "demo": ("energytwin.commands", "demo", "Run the embedded stack with simulated meters (real firmware)."),
        "community": ("community.commands", "community", "Energy communities: member accounting, sharing coefficients."),
        "quality": ("twin_service.quality.commands", "quality", "Power-quality analytics: EN 50160 compliance, events, weekly report."),
        "dashboards": ("grafana.commands", "dashboards", "Build the Grafana dashboards (JSON) from their Python definitions."),
        "provision": ("provisioning.commands", "provision", "Make the agent and broker match an inventory file."),
        "web": ("energytwin.page_web", "web", "Serve the live twin page (overview, meters, phasors, events)."),
        "meter": ("firmware.commands", "meter", "Meter helpers: calibrate gain registers from a reference reading."),
        "forecast": ("energytwin.forecast_cli", "forecast", "24-hour PV, load and price forecasts; score them against naive baselines."),
        "fleet": ("fleet.commands", "fleet", "Home batteries steered toward the fleet's mean state of charge; strategy simulation."),
        "users": ("access.commands", "users", "Local token issuer: users with hashed secrets, bearer tokens."),
        "access": ("energytwin.access_mqtt", "access", "Access control: the policy enforcement point in front of the broker."),
        "inverter": ("bridges.sunspec.commands", "inverter", "Inverters and batteries over Modbus/SunSpec: scan, run the bridge, simulate."),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self._commands:
            return None
        module_name, attr, _ = self._commands[name]
        module = __import__(module_name, fromlist=[attr])
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, _, help_text) in sorted(self._commands.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="energytwin")
@click.option("-v", "--verbose", count=True, help="More log detail (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """energytwin: three-phase ADE9000 meters as a live FIWARE NGSI-LD digital twin.

    \b
    Start here:
      energytwin demo          the embedded stack + a simulated meter; prints the curl to see the twin
      energytwin up            the embedded stack alone, for real meters and FIWARE apps
    Every command has --help with examples.
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    cli(prog_name="energytwin")


if __name__ == "__main__":
    main()
