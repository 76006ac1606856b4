"""`IotAgentClient`: the FIWARE IoT Agent north (provisioning) API, as iotagent-node-lib serves it on port 4041.

Service groups on `/iot/services`, devices on `/iot/devices`, scoped by the `fiware-service` and
`fiware-servicepath` headers (the service becomes the NGSI-LD tenant). Errors come back as `{"name", "message"}`
and are raised as `IotAgentError` with both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from ._errors import IotAgentError, iot_agent_error
from ._http import DEFAULT_RETRY, Call, Op, RetryPolicy, SyncBase

DEVICE_PAGE = 500  # GET /iot/devices page size
CREATE_CHUNK = 250  # devices per POST /iot/devices (one request is all-or-nothing on the agent)


def _agent_error(response: httpx.Response, call: Call) -> Exception:
    return iot_agent_error(response)


def _one(call: Call) -> Op[httpx.Response]:
    return (yield call)


class IotAgentClient(SyncBase):
    """One `fiware-service` / `fiware-servicepath` of one IoT Agent."""

    def __init__(self, base_url: str, service: str, service_path: str = "/", *, timeout: float = 30.0,
                 retry: RetryPolicy = DEFAULT_RETRY, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, {"fiware-service": service, "fiware-servicepath": service_path},
                         timeout=timeout, retry=retry, error=_agent_error, transport=transport)
        self.service = service
        self.service_path = service_path

    def _call(self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None,
              expect: Iterable[int] = (200,)) -> httpx.Response:
        if body is None:
            call = Call(method, path, params, expect=frozenset(expect))
        else:
            call = Call.json(method, path, body, params=params, expect=frozenset(expect))
        return self._run(_one(call))

    # -- service groups -------------------------------------------------------------------------------------
    def service_groups(self) -> list[dict[str, Any]]:
        """Every service group of this service and path."""
        return list(self._call("GET", "/iot/services").json().get("services", []))

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
        found: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", "/iot/devices", params={"limit": DEVICE_PAGE, "offset": len(found)}).json()
            batch = page.get("devices") or []
            found += batch
            if not batch or len(found) >= int(page.get("count", len(found))):
                return found

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
            self._call("POST", "/iot/devices", body={"devices": bodies[start:start + chunk]}, expect=(201,))

    def update_device(self, device_id: str, fields: Mapping[str, Any]) -> None:
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
