"""A small client for the IoT Agent north (provisioning) API, idempotent where the API is not.

Works against the embedded agent and the FIWARE IoT Agent JSON alike: same routes, headers and error names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

import httpx

from provisioning.agent_bodies import Site


class ProvisioningError(RuntimeError):
    """The agent refused a provisioning request; carries the agent's error name and message."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        try:
            body = response.json()
            self.name = body.get("name", "")
            self.agent_message = body.get("message", "")
        except ValueError:
            self.name, self.agent_message = "", response.text[:500]
        super().__init__(
            f"{response.request.method} {response.request.url} -> {response.status_code} "
            f"{self.name}: {self.agent_message}"
        )


@dataclass
class ProvisioningReport:
    """What a provisioning run changed, for the operator."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


class NorthClient:
    """Provision service groups and devices; an existing one (409) counts as present, not as a failure."""

    def __init__(self, base_url: str, site: Site, timeout_s: float = 10.0) -> None:
        self._http = httpx.Client(base_url=base_url, headers=site.headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_group(self, group: dict, report: ProvisioningReport) -> None:
        label = f"service group apikey={group['apikey']}"
        response = self._http.post("/iot/services", json={"services": [group]})
        self._record(response, label, "DUPLICATE_GROUP", report)

    def ensure_device(self, device: dict, report: ProvisioningReport) -> None:
        label = f"device {device['device_id']}"
        response = self._http.post("/iot/devices", json={"devices": [device]})
        self._record(response, label, "DUPLICATE_DEVICE_ID", report)

    @staticmethod
    def _record(response: httpx.Response, label: str, duplicate: str, report: ProvisioningReport) -> None:
        if response.status_code in (200, 201):
            report.created.append(label)
            return
        error = ProvisioningError(response)
        if response.status_code == 409 and error.name == duplicate:
            report.existing.append(label)
            return
        raise error
