"""`energytwin users ...` (the local token issuer) and `energytwin access serve` (the PEP in front of a broker).

`energytwin access mqtt` (per-device MQTT logins for an inventory's devices) joins this group in the CLI layer,
energytwin/access_mqtt.py, since its device list is the provisioning inventory's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from access._policy import ACTIONS, ROLES

DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var"),
                        show_default=True, help="The stack's data dir (keys and users live in DATA_DIR/access/).")
ROLE_CHOICES = list(ROLES)
AUDIENCE = click.option("--audience", default="energytwin", show_default=True,
                        help="The community the tokens are for (their `aud`); another community's are refused.")


@click.group()
def users() -> None:
    """The embedded stack's local token issuer: users with hashed secrets, bearer tokens for them.

    \b
    Examples:
      energytwin users add ana --role member --device meter-001 --data-dir var
      energytwin users token --role member --member meter-001 --data-dir var
      energytwin users token --user ana --secret '...' --data-dir var
      curl -H "Authorization: Bearer $(energytwin users token --role manager | tail -1)" \\
           http://127.0.0.1:1026/ngsi-ld/v1/entities?type=ThreePhaseAcMeasurement
    """


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLE_CHOICES))
@click.option("--device", "devices", multiple=True, help="A device (meter) id the user owns (repeatable).")
@click.option("--cups", "cups", multiple=True, help="A CUPS the user owns (repeatable).")
@click.option("--member", help="The member id (default: NAME for a member).")
@click.option("--secret", help="The secret (default: a random one, printed once; only its Argon2 hash is kept).")
@click.option("--replace", is_flag=True, help="Replace an existing user of that name.")
@DATA_DIR
def add(name: str, role: str, devices: tuple[str, ...], cups: tuple[str, ...], member: str | None,
        secret: str | None, replace: bool, data_dir: Path) -> None:
    """Add a user to the local issuer."""
    from access._users import UserError, UserStore

    try:
        secret = UserStore(data_dir).add(name, role, secret=secret, member=member, devices=list(devices),
                                         cups=list(cups), replace=replace)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"user {name} ({role}) added; secret (shown once):")
    click.echo(secret)


@users.command("list")
@DATA_DIR
def list_users(data_dir: Path) -> None:
    """List the local issuer's users (never their secrets)."""
    from access._users import UserStore

    for user in UserStore(data_dir).load().values():
        owns = ", ".join([*user.devices, *user.cups]) or "-"
        click.echo(f"{user.name}\t{user.role}\t{user.member or '-'}\t{owns}")


@users.command("token")
@click.option("--role", type=click.Choice(ROLE_CHOICES),
              help="Issue for a role (operator use, no secret asked); or give --user and --secret.")
@click.option("--member", help="The member id, or the device id of the member's meter (role member/device).")
@click.option("--user", help="A user added with `users add`.")
@click.option("--secret", help="That user's secret.")
@click.option("--hours", type=float, default=12.0, show_default=True, help="Lifetime of the token.")
@click.option("--tenant", help="Bind the token to one NGSI-LD tenant (fiware-service); others are refused.")
@AUDIENCE
@DATA_DIR
def token(role: str | None, member: str | None, user: str | None, secret: str | None, hours: float,
          tenant: str | None, audience: str, data_dir: Path) -> None:
    """Print a bearer token (on the last line) signed by the local issuer."""
    from access._tokens import LocalIssuer
    from access._users import UserError, UserStore

    issuer = LocalIssuer(data_dir, audience=audience)
    store = UserStore(data_dir)
    if user:
        try:
            found = store.check(user, secret or "")
        except UserError as exc:
            raise click.ClickException(str(exc)) from exc
        subject, role, member_id, devices, cups = found.name, found.role, found.member, found.devices, found.cups
    elif role:
        subject, member_id, devices, cups = role, None, [], []
        if role in ("member", "device"):
            if not member:
                raise click.ClickException(f"--role {role} needs --member (a member id or a meter's device id)")
            known = store.member(member)
            if known is not None:
                subject, member_id, devices, cups = known.name, known.member, known.devices, known.cups
            else:  # a device id: the member owning that meter (the demo's one member per meter)
                subject = member_id = member if role == "device" else f"member-{member}"
                devices = [member]
    else:
        raise click.ClickException("give --role (and --member), or --user and --secret")
    click.echo(f"token for {subject} (role {role}, valid {hours:g} h, audience {audience}):")
    click.echo(issuer.token(subject, role, member=member_id, devices=devices, cups=cups, lifetime_s=hours * 3600,
                            tenant=tenant))


@click.group()
def access() -> None:
    """Access control: the policy enforcement point in front of an NGSI-LD broker or the IoT Agent."""


@access.command("serve")
@click.option("--upstream", required=True, help="The broker (or agent north API) behind, e.g. http://orion:1026.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address (loopback unless told).")
@click.option("--port", type=int, default=1027, show_default=True)
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The policy file (default: the one shipped in access/policy.yaml).")
@click.option("--jwks-url", help="The OIDC provider's JWKS URL (Keyrock, Keycloak...). Default: the local issuer.")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JWKS JSON file or PEM public key instead of --jwks-url.")
@click.option("--issuer", help="The expected `iss` (required with --jwks-url/--key-file).")
@AUDIENCE
@click.option("--relay-url", help="How the upstream reaches this PEP for notifications (default http://HOST:PORT).")
@click.option("--http", "http_impl", type=click.Choice(["auto", "httptools", "h11"]), default="auto",
              show_default=True, help="HTTP parser: httptools (C, llhttp) when installed, else h11 (pure Python).")
@click.option("--loop", "loop_impl", type=click.Choice(["auto", "uvloop", "asyncio"]), default="auto",
              show_default=True, help="Event loop: uvloop (libuv) when installed, else asyncio's.")
@click.option("--actions", "actions", multiple=True, type=click.Choice(ACTIONS),
              help="Forward only these actions (repeatable; default all): in front of Mintaka, "
                   "--actions temporal.read. Anything else gets 403 before the upstream sees it.")
@DATA_DIR
def serve(upstream: str, host: str, port: int, policy_file: Path | None, jwks_url: str | None,
          key_file: Path | None, issuer: str | None, audience: str, relay_url: str | None, http_impl: str,
          loop_impl: str, actions: tuple[str, ...], data_dir: Path) -> None:
    """Serve the PEP: every request needs a bearer token; bodies are filtered to what the role may see.

    \b
    In front of Orion-LD with Keyrock:
      energytwin access serve --upstream http://orion:1026 --host 0.0.0.0 --port 1027 \\
        --jwks-url https://keyrock.example/.well-known/jwks.json --issuer https://keyrock.example
    In front of Mintaka (Orion-LD's temporal API), a second PEP with the same issuer:
      energytwin access serve --upstream http://mintaka:8080 --host 0.0.0.0 --port 1028 \\
        --actions temporal.read --jwks-url ... --issuer ...
    """
    import uvicorn

    from access._pep import Pep, build_app
    from access._policy import PolicyError, load_policy
    from access._tokens import LocalIssuer, TokenVerifier

    try:
        policy = load_policy(policy_file)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from exc
    if jwks_url or key_file:
        if not issuer:
            raise click.ClickException("--issuer is required with --jwks-url or --key-file")
        verifier = TokenVerifier(issuer=issuer, audience=audience, jwks_url=jwks_url, key_file=key_file)
    else:
        verifier = LocalIssuer(data_dir, audience=audience).verifier()
    (data_dir / "access").mkdir(parents=True, exist_ok=True)
    pep = Pep(upstream, verifier, policy, relay_base_url=relay_url or f"http://{host}:{port}",
              state_file=data_dir / "access" / f"pep-{port}-relays.json",
              actions=frozenset(actions) if actions else None)
    logging.getLogger("access").setLevel(logging.INFO)
    http_impl, loop_impl = server_implementation(http_impl, loop_impl)
    only = f"; forwarding only {', '.join(sorted(actions))}" if actions else ""
    click.echo(f"access layer on http://{host}:{port} in front of {upstream} (HTTP parser {http_impl}, "
               f"event loop {loop_impl}; counters at /pep/metrics{only})", err=True)
    # No access log, proxy-header rewriting, Date or Server header: per-request work a proxy does not need.
    uvicorn.run(build_app(pep), host=host, port=port, log_level="warning", access_log=False, proxy_headers=False,
                server_header=False, date_header=False, http=http_impl, loop=loop_impl)


def server_implementation(http_impl: str = "auto", loop_impl: str = "auto") -> tuple[str, str]:
    """The HTTP parser and event loop the PEP runs on: the C ones (httptools, uvloop) when installed.

    The PEP's own decisions are a small part of its CPU; most goes to parsing HTTP and running the event loop
    (bench/access_overhead.py measures each pair), so the C implementations are chosen whenever present
    (`pip install 'energytwin[access-fast]'`). Asking for one that is not installed is an error, not a silent
    fallback."""
    import importlib.util

    def have(module: str) -> bool:
        return importlib.util.find_spec(module) is not None

    if http_impl == "auto":
        http_impl = "httptools" if have("httptools") else "h11"
    if loop_impl == "auto":
        loop_impl = "uvloop" if have("uvloop") else "asyncio"
    for name, wanted in (("httptools", http_impl), ("uvloop", loop_impl)):
        if wanted == name and not have(name):
            raise click.ClickException(f"--{'http' if name == 'httptools' else 'loop'} {name}: {name} is not "
                                       f"installed (pip install {name})")
    return http_impl, loop_impl
