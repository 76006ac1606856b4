"""Provisioning API errors with the names, messages and statuses of the FIWARE IoT Agent library.

Clients (FiLiP, provisioning scripts, the agent's own healthchecks) branch on `name` and the HTTP status, so both
are copied from iotagent-node-lib `lib/errors.js`; the message may say more than the original when that helps.
"""

from __future__ import annotations

import json


class ProvisioningError(Exception):
    """An error the north API answers as `{"name": …, "message": …}` with `status`."""

    def __init__(self, name: str, message: str, status: int) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.status = status

    def body(self) -> dict[str, str]:
        """The JSON body the FIWARE agent sends for this error."""
        return {"name": self.name, "message": self.message}


def missing_headers(missing: list[str]) -> ProvisioningError:
    """Mandatory headers (or query parameters: the agent reports both this way) are absent."""
    return ProvisioningError(
        "MISSING_HEADERS", f"Some headers were missing from the request: {json.dumps(missing)}", 400
    )


def wrong_syntax(detail: str) -> ProvisioningError:
    """The body is not JSON or does not match the provisioning schema."""
    return ProvisioningError("WRONG_SYNTAX", f"Wrong syntax in request: {detail}", 400)


def missing_attributes(missing: list[str], item: object) -> ProvisioningError:
    """A mandatory field of a body item is absent (node-lib's `MissingAttributes`, e.g. a device without id)."""
    return ProvisioningError("MISSING_ATTRIBUTES", f"The request was not well formed:Missing attributes: "
                             f"{json.dumps(missing)} with: {json.dumps(item, separators=(',', ':'))}", 400)


def bad_request(detail: str) -> ProvisioningError:
    """A request the agent refuses for a reason other than syntax (e.g. changing a device id)."""
    return ProvisioningError("BAD_REQUEST", f"Request error connecting to the Context Broker: {detail}", 400)


def duplicate_group(resource: str, apikey: str) -> ProvisioningError:
    """A group with this (resource, apikey) pair already exists."""
    return ProvisioningError(
        "DUPLICATE_GROUP",
        f"A device configuration already exists for resource {resource} and API Key {apikey}",
        409,
    )


def duplicate_device(device_id: str) -> ProvisioningError:
    """A device with this id already exists in the service."""
    return ProvisioningError(
        "DUPLICATE_DEVICE_ID", f"A device with the same pair (Service, DeviceId) was found:{device_id}", 409
    )


def device_not_found(device_id: str) -> ProvisioningError:
    """No device with this id in the service / servicepath of the request."""
    return ProvisioningError("DEVICE_NOT_FOUND", f"No device was found with id:{device_id}", 404)


def group_not_found(resource: str, apikey: str) -> ProvisioningError:
    """No group with this (resource, apikey) in the service / servicepath of the request."""
    return ProvisioningError(
        "DEVICE_GROUP_NOT_FOUND",
        f"Couldn't find device group for fields: resource, apikey and values: {resource}, {apikey}",
        404,
    )
