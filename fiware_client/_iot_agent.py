"""`IotAgentClient`: the FIWARE IoT Agent north (provisioning) API, as iotagent-node-lib serves it on port 4041.

Service groups on `/iot/services`, devices on `/iot/devices`, scoped by the `fiware-service` and
`fiware-servicepath` headers (the service becomes the NGSI-LD tenant). Errors come back as `{"name", "message"}`
and are raised as `IotAgentError` with both.

What the FIWARE agent itself does differently (measured on iotagent-node-lib 4.14.0, docs/compatibility.md
"Provisioning against the FIWARE IoT Agent") is absorbed here, so callers see one behaviour:
- a tenant without groups answers 404 `DEVICE_GROUP_NOT_FOUND`: `service_groups()` returns [];
- some failures come with a 2xx status and an error body (a device PUT answered 200 `ENTITY_GENERIC_ERROR`):
  an error body is raised whatever the status;
- a device PUT whose attributes the agent could not upsert to its broker (the broker's 201 for a new entity is
  one such answer) fails with ENTITY_GENERIC_ERROR and changes nothing: `update_device()` sends it once more;
- a multi-device POST is not atomic (the devices before a refused one are stored): after a 409,
  `create_devices()` sends the chunk one device at a time and takes DUPLICATE_DEVICE_ID as "stored already";
- `devices()` stops when a page brings no device it has not seen (a registry ignoring `offset` cannot loop).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from ._auth import TokenProvider
from ._errors import IotAgentError, iot_agent_error
from ._http import DEFAULT_RETRY, Call, Op, RetryPolicy, SyncBase

DEVICE_PAGE = 500  # GET /iot/devices page size
CREATE_CHUNK = 250  # devices per POST /iot/devices (all-or-nothing on the embedded agent, not on node-lib)
GROUP_NOT_FOUND = "DEVICE_GROUP_NOT_FOUND"
ENTITY_GENERIC_ERROR = "ENTITY_GENERIC_ERROR"
DUPLICATE_DEVICE_ID = "DUPLICATE_DEVICE_ID"


def _agent_error(response: httpx.Response, call: Call) -> Exception:
    return iot_agent_error(response)


def _one(call: Call) -> Op[httpx.Response]:
    return (yield call)


class IotAgentClient(SyncBase):
    """One `fiware-service` / `fiware-servicepath` of one IoT Agent."""

    def __init__(self, base_url: str, service: str, service_path: str = "/", *, timeout: float = 30.0,
                 retry: RetryPolicy = DEFAULT_RETRY, transport: httpx.BaseTransport | None = None,
                 token: str | TokenProvider | None = None) -> None:
        """`token`: a bearer token or a provider of one, for an agent behind an access layer (as NgsiLdClient)."""
        super().__init__(base_url, {"fiware-service": service, "fiware-servicepath": service_path},
                         timeout=timeout, retry=retry, error=_agent_error, transport=transport, token=token)
        self.service = service
        self.service_path = service_path

    def _call(self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None,
              expect: Iterable[int] = (200,)) -> httpx.Response:
        if body is None:
            call = Call(method, path, params, expect=frozenset(expect))
        else:
            call = Call.json(method, path, body, params=params, expect=frozenset(expect))
        response = self._run(_one(call))
        if _is_error_body(response):  # node-lib answers some failures with 200 and an error body
            raise iot_agent_error(response)
        return response

    # -- service groups -------------------------------------------------------------------------------------
    def service_groups(self) -> list[dict[str, Any]]:
        """Every service group of this service and path ([] for the FIWARE agent's 404 on a tenant without any)."""
        try:
            return list(self._call("GET", "/iot/services").json().get("services", []))
        except IotAgentError as exc:
            if exc.status == 404 and exc.name == GROUP_NOT_FOUND:
                return []
            raise

    def create_service_groups(self, groups: Iterable[Mapping[str, Any]]) -> None:
        self._call("POST", "/iot/services", body={"services": [dict(g) for g in groups]}, expect=(201,))

    def update_service_group(self, resource: str, apikey: str, fields: Mapping[str, Any]) -> None:
        self._call("PUT", "/iot/services", body=dict(fields), params={"resource": resource, "apikey": apikey},
                   expect=(200, 204))

    def delete_service_group(self, resource: str, apikey: str) -> None:
        self._call("DELETE", "/iot/services", params={"resource": resource, "apikey": apikey}, expect=(200, 204))

    # -- devices --------------------------------------------------------------------------------------------
    def devices(self) -> list[dict[str, Any]]:
        """Every device of this service and path, across pages (`limit`/`offset`, stopping at `count`)."""
        found: dict[str, dict[str, Any]] = {}
        while True:
            page = self._call("GET", "/iot/devices", params={"limit": DEVICE_PAGE, "offset": len(found)}).json()
            fresh = [d for d in page.get("devices") or [] if d.get("device_id") not in found]
            found.update((d.get("device_id"), d) for d in fresh)
            if not fresh or len(found) >= int(page.get("count", len(found))):
                return list(found.values())

    def get_device(self, device_id: str) -> dict[str, Any]:
        """One device; IotAgentError with name DEVICE_NOT_FOUND (404) when the agent has none."""
        return self._call("GET", f"/iot/devices/{device_id}").json()

    def find_device(self, device_id: str) -> dict[str, Any] | None:
        """One device, None when the agent has none."""
        try:
            return self.get_device(device_id)
        except IotAgentError as exc:
            if exc.status == 404:
                return None
            raise

    def create_devices(self, devices: Iterable[Mapping[str, Any]], chunk: int = CREATE_CHUNK) -> None:
        """Provision devices, `chunk` per request."""
        bodies = [dict(d) for d in devices]
        for start in range(0, len(bodies), chunk):
            part = bodies[start:start + chunk]
            try:
                self._call("POST", "/iot/devices", body={"devices": part}, expect=(201,))
            except IotAgentError as exc:
                if len(part) == 1 or exc.status != 409:
                    raise
                for body in part:  # node-lib stored those before the refused one
                    try:
                        self._call("POST", "/iot/devices", body={"devices": [body]}, expect=(201,))
                    except IotAgentError as single:
                        if single.name != DUPLICATE_DEVICE_ID:
                            raise

    def update_device(self, device_id: str, fields: Mapping[str, Any], *, again: bool = True) -> None:
        """PUT a device; sent once more after ENTITY_GENERIC_ERROR unless `again` is false (module docstring)."""
        try:
            self._call("PUT", f"/iot/devices/{device_id}", body=dict(fields), expect=(200, 204))
        except IotAgentError as exc:
            if exc.name != ENTITY_GENERIC_ERROR or not again:
                raise
            self._call("PUT", f"/iot/devices/{device_id}", body=dict(fields), expect=(200, 204))

    def delete_device(self, device_id: str, *, missing_ok: bool = False) -> bool:
        """Remove a device; with `missing_ok`, False instead of an error when the agent had none."""
        try:
            self._call("DELETE", f"/iot/devices/{device_id}", expect=(200, 204))
        except IotAgentError as exc:
            if missing_ok and exc.status == 404:
                return False
            raise
        return True

    def about(self) -> dict[str, Any]:
        """GET /iot/about: the agent's version and library version."""
        return self._call("GET", "/iot/about").json()


def _is_error_body(response: httpx.Response) -> bool:
    """An IoT Agent error body (`{"name": …, "message": …}`), whatever the status it came with."""
    if not response.content:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("name"), str) and "message" in body
