"""`energytwin users token`: the token on the last line; `--member` takes a member id or the device id of the
member's meter; the claims say who the token is for."""

from __future__ import annotations

from pathlib import Path

import jwt
from click.testing import CliRunner

from access import LocalIssuer
from access.commands import users


def _claims(data_dir: Path, *args: str) -> dict:
    result = CliRunner().invoke(users, ["token", "--data-dir", str(data_dir), *args])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    return LocalIssuer(data_dir).verifier().verify(token).__dict__ | {"raw": jwt.decode(
        token, options={"verify_signature": False})}


def test_member_by_member_id_or_by_meter(tmp_path: Path):
    out = CliRunner().invoke(users, ["add", "member-meter-003", "--role", "member", "--device", "meter-003",
                                     "--cups", "ES0031405123456789JN0F", "--data-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    by_id = _claims(tmp_path, "--role", "member", "--member", "member-meter-003")
    by_meter = _claims(tmp_path, "--role", "member", "--member", "meter-003")
    for claims in (by_id, by_meter):  # the same member either way, with the CUPS it was given
        assert claims["subject"] == "member-meter-003" and claims["member"] == "member-meter-003"
        assert claims["devices"] == frozenset({"meter-003"}) and "ES0031405123456789JN0F" in claims["cups"]
    # No user owns meter-004: the demo's convention, one member per meter, named member-<device>.
    other = _claims(tmp_path, "--role", "member", "--member", "meter-004")
    assert other["member"] == "member-meter-004" and other["devices"] == frozenset({"meter-004"})
    manager = _claims(tmp_path, "--role", "manager", "--hours", "1")
    assert manager["role"] == "manager" and not manager["devices"]
    assert manager["raw"]["exp"] - manager["raw"]["iat"] == 3600


def test_refusals_are_clear(tmp_path: Path):
    result = CliRunner().invoke(users, ["token", "--data-dir", str(tmp_path), "--role", "member"])
    assert result.exit_code != 0 and "--member" in result.output
    result = CliRunner().invoke(users, ["token", "--data-dir", str(tmp_path), "--user", "nobody", "--secret", "x"])
    assert result.exit_code != 0 and "unknown user or wrong secret" in result.output
