"""`energytwin access mqtt`: per-device MQTT logins for the devices of a provisioning inventory.

It lives in the CLI layer because it joins two parts: the device list is the provisioning inventory's (the one
list of devices) and the logins are the access part's (access._mqtt_auth). The command is added to the
`energytwin access` group here.
"""

from __future__ import annotations

from pathlib import Path

import click

from access.commands import DATA_DIR, access


@access.command("mqtt")
@click.argument("inventory", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--device", "devices", multiple=True, metavar="APIKEY/DEVICE_ID",
              help="A device to give a login without an inventory (repeatable), e.g. meterkey/meter-001.")
@click.option("--show", "show", metavar="DEVICE_ID", help="Print that device's login (user and secret) to flash it.")
@DATA_DIR
def mqtt_credentials(inventory: Path | None, devices: tuple[str, ...], show: str | None, data_dir: Path) -> None:
    """Per-device MQTT logins: a secret per meter, Mosquitto's password_file and acl_file.

    Every meter of INVENTORY (the `energytwin provision` file) gets a login (user = its device id) that may
    publish only /json/<apikey>/<device_id>/attrs... and read only its own /cmd. Existing secrets are kept.
    The files land in DATA_DIR/access/mqtt/ (mode 0600); a running `energytwin up` on DATA_DIR is told to
    re-read them (SIGHUP to Mosquitto; the amqtt fallback notices the change itself).

    \b
    Examples:
      energytwin access mqtt provisioning/examples/site.yaml --data-dir var
      energytwin access mqtt --show meter-001 --data-dir var      # MQTT_USER / MQTT_PASSWORD for config.py
    In production point Mosquitto at them: password_file .../password_file, acl_file .../acl_file.
    """
    from access._mqtt_auth import MqttAuthError, MqttCredentials

    wanted: list[tuple[str, str]] = []
    if inventory is not None:
        from provisioning.inventory import InventoryError, load_inventory

        try:
            inv = load_inventory(inventory)
        except InventoryError as exc:
            raise click.ClickException(str(exc)) from exc
        for tenant in inv.tenants:
            wanted += [(tenant.apikey_of(meter), meter.device_id) for _, meter in tenant.meters()]
    for item in devices:
        apikey, sep, device_id = item.partition("/")
        if not sep or not apikey or not device_id:
            raise click.ClickException(f"--device {item!r}: expected APIKEY/DEVICE_ID")
        wanted.append((apikey, device_id))
    creds = MqttCredentials(data_dir)
    before = set(creds.load())
    try:
        accounts = creds.ensure(wanted)
    except MqttAuthError as exc:
        raise click.ClickException(str(exc)) from exc
    added = sorted(set(accounts) - before)
    click.echo(f"{len(accounts)} MQTT logins ({len(added)} new{': ' + ', '.join(added) if added else ''}) in "
               f"{creds.directory}", err=True)
    if added:
        _reload_running_mqtt(data_dir)
    if show:
        login = creds.login(show)
        if login is None:
            raise click.ClickException(f"no MQTT login for {show!r} (give it with --device APIKEY/{show})")
        click.echo(f"MQTT_USER = {login[0]!r}")
        click.echo(f"MQTT_PASSWORD = {login[1]!r}")


def _reload_running_mqtt(data_dir: Path) -> None:
    """SIGHUP the Mosquitto of a stack running on data_dir (named in its stack.json), so new logins work now."""
    import json
    import signal

    import psutil

    try:
        lock = json.loads((data_dir / "stack.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    for name, info in (lock.get("children") or {}).items():
        if not name.startswith("mqtt (mosquitto") or not isinstance(info, dict):
            continue
        try:
            procs = [psutil.Process(info["pid"]), *psutil.Process(info["pid"]).children(recursive=True)]
        except (psutil.Error, KeyError, TypeError):
            continue
        for proc in procs:
            try:
                if proc.name() == "mosquitto":
                    proc.send_signal(signal.SIGHUP)
                    click.echo(f"told Mosquitto (pid {proc.pid}) to re-read its password and ACL files", err=True)
            except psutil.Error:
                pass
