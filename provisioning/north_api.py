"""The IoT Agent north (provisioning) API as `energytwin provision` needs it, with the FIWARE agent's quirks absorbed.

Measured against iotagent-node-lib 4.14.0 itself (tests/provisioning/test_real_agent.py runs the library's own
north API), each quirk handled here is listed in docs/compatibility.md ("Provisioning against the FIWARE agent"):

- `GET /iot/services` on a tenant with no group answers **404 `DEVICE_GROUP_NOT_FOUND`**, not an empty list: read
  as "no groups".
- A device PUT that the agent could not mirror on the broker answers **200 with an error body**
  (`{"name": "ENTITY_GENERIC_ERROR", …}`) and leaves the device unchanged. The agent upserts the device's new
  attributes first and accepts only 200/204 from the broker; a broker that had no entity for the device answers
  201 (created) to that upsert — so the first PUT of a device that never sent a measure fails although the
  broker now holds the entity. An error body is therefore a failure whatever the status, and the PUT is sent once
  more when the first answer was ENTITY_GENERIC_ERROR (the entity exists by then, the second one succeeds).
- `POST /iot/devices` with several devices is not atomic: the devices before a refused one are stored. After a
  409 the chunk is sent again one device at a time, and DUPLICATE_DEVICE_ID then means "already stored by the
  first attempt".
- `GET /iot/devices` pages with `limit`/`offset` and reports the total in `count`; pages are read until `count`
  devices arrived or a page comes back empty (or only with devices seen before), so a registry that ignores
  `offset` cannot loop for ever.
- Numbers come back as JavaScript wrote them (`400.0` is `400`): comparisons in sync.py are numeric.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self

import httpx

DEVICE_PAGE = 500  # GET /iot/devices page size
GROUP_NOT_FOUND = "DEVICE_GROUP_NOT_FOUND"
ENTITY_GENERIC_ERROR = "ENTITY_GENERIC_ERROR"
DUPLICATE_DEVICE = "DUPLICATE_DEVICE_ID"


class ApiError(RuntimeError):
    """A request was refused; says which, and what the server answered."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(
            f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text[:500]}"
        )
        self.response = response

    @property
    def name(self) -> str | None:
        """The IoT Agent error name (`DEVICE_NOT_FOUND`, …), when the body has one."""
        return error_name(self.response)


def error_name(response: httpx.Response) -> str | None:
    """`name` of an IoT Agent error body `{"name": …, "message": …}`, else None."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("name"), str) and "message" in body:
        return body["name"]
    return None


class AgentNorth:
    """One IoT Agent's north API for one tenant (`fiware-service` + `fiware-servicepath`)."""

    def __init__(self, client: httpx.Client, service: str, service_path: str = "/") -> None:
        self._client = client
        self.headers = {"fiware-service": service, "fiware-servicepath": service_path}

    @classmethod
    def connect(cls, base_url: str, service: str, service_path: str = "/", timeout_s: float = 30.0) -> Self:
        return cls(httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s), service, service_path)

    def _request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None,
                 ok: tuple[int, ...] = (200, 201, 204)) -> httpx.Response:
        response = self._client.request(method, path, headers=self.headers, json=body, params=params)
        # node-lib answers some failures with 200 and an error body: a body with a `name` is never a success
        if response.status_code not in ok or error_name(response) is not None:
            raise ApiError(response)
        return response

    # ---- service groups -------------------------------------------------------------------------------------

    def groups(self) -> list[dict[str, Any]]:
        """The tenant's service groups; [] for a tenant the FIWARE agent answers 404 DEVICE_GROUP_NOT_FOUND for."""
        response = self._client.get("/iot/services", headers=self.headers)
        if response.status_code == 404 and error_name(response) == GROUP_NOT_FOUND:
            return []
        if response.status_code != 200:
            raise ApiError(response)
        return list(response.json().get("services", []))

    def create_groups(self, groups: list[dict[str, Any]]) -> None:
        self._request("POST", "/iot/services", {"services": groups})

    def update_group(self, resource: str, apikey: str, update: dict[str, Any]) -> None:
        self._request("PUT", "/iot/services", update, {"resource": resource, "apikey": apikey})

    def delete_group(self, resource: str, apikey: str) -> None:
        self._request("DELETE", "/iot/services", None, {"resource": resource, "apikey": apikey})

    # ---- devices ---------------------------------------------------------------------------------------------

    def devices(self) -> list[dict[str, Any]]:
        """Every device of the tenant, page by page."""
        return list(self._iter_devices())

    def _iter_devices(self) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        while True:
            response = self._request("GET", "/iot/devices", params={"limit": DEVICE_PAGE, "offset": len(seen)},
                                     ok=(200,))
            page = response.json()
            fresh = [d for d in page.get("devices", []) if d.get("device_id") not in seen]
            for device in fresh:
                seen.add(device["device_id"])
                yield device
            if not fresh or len(seen) >= int(page.get("count", 0)):
                return

    def device(self, device_id: str) -> dict[str, Any]:
        return self._request("GET", f"/iot/devices/{device_id}", ok=(200,)).json()

    def create_devices(self, devices: list[dict[str, Any]]) -> None:
        """Create devices in one request; after a 409, one by one (the FIWARE agent may have stored some)."""
        try:
            self._request("POST", "/iot/devices", {"devices": devices})
        except ApiError as exc:
            if len(devices) == 1 or exc.response.status_code != 409:
                raise
            for device in devices:
                try:
                    self._request("POST", "/iot/devices", {"devices": [device]})
                except ApiError as single:
                    if single.name != DUPLICATE_DEVICE:
                        raise

    def update_device(self, device_id: str, update: dict[str, Any], *, again: bool = True) -> None:
        """PUT a device; once more after ENTITY_GENERIC_ERROR unless `again` is false (see the module docstring)."""
        try:
            self._request("PUT", f"/iot/devices/{device_id}", update)
        except ApiError as exc:
            if exc.name != ENTITY_GENERIC_ERROR or not again:
                raise
            self._request("PUT", f"/iot/devices/{device_id}", update)

    def delete_device(self, device_id: str) -> None:
        self._request("DELETE", f"/iot/devices/{device_id}")

    # ---- the agent itself ------------------------------------------------------------------------------------

    def about(self) -> dict[str, Any]:
        """`GET /iot/about` (no tenant headers needed)."""
        response = self._client.get("/iot/about")
        if response.status_code != 200:
            raise ApiError(response)
        return response.json()
