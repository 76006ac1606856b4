"""NGSI-LD ProblemDetails: the one error shape every failed request gets, as Orion-LD answers them."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

ERROR_TYPE_PREFIX = "https://uri.etsi.org/ngsi-ld/errors/"

# ETSI GS CIM 009 error types (clause 5.5.2) and the HTTP status each one carries (clause 6.3.2, Table 6.3.2-1).
STATUS_BY_TYPE: dict[str, int] = {
    "InvalidRequest": 400,
    "BadRequestData": 400,
    "AlreadyExists": 409,
    "OperationNotSupported": 422,
    "ResourceNotFound": 404,
    "NonexistentTenant": 404,
    "InternalError": 500,
    "TooComplexQuery": 403,
    "TooManyResults": 403,
    "LdContextNotAvailable": 503,
    "NoMultiTenantSupport": 501,
}


class NgsiLdError(Exception):
    """A request the broker refuses; rendered as ProblemDetails by the app's one exception handler.

    `status` defaults to the ETSI status of `error_type`; HTTP-level refusals the ETSI list has no type for
    (405, 406, 413, 415, 501) pass their own status with the closest type, as Orion-LD does.
    """

    def __init__(self, error_type: str, title: str, detail: str = "", *, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{error_type}: {title}{' - ' + detail if detail else ''}")
        self.error_type = error_type
        self.title = title
        self.detail = detail
        self.status = status if status is not None else STATUS_BY_TYPE[error_type]
        self.headers = headers or {}

    def problem(self) -> dict[str, Any]:
        """The ProblemDetails body (also used inside 207 batch answers)."""
        body: dict[str, Any] = {"type": ERROR_TYPE_PREFIX + self.error_type, "title": self.title,
                                "status": self.status}  # RFC 9457 member; FiLiP logs it for 207 batch errors
        if self.detail:
            body["detail"] = self.detail
        return body

    def response(self) -> JSONResponse:
        """The HTTP answer: ProblemDetails as `application/json`, which Orion-LD uses for errors."""
        return JSONResponse(self.problem(), status_code=self.status, headers=self.headers,
                            media_type="application/json")


def bad_request(title: str, detail: str = "") -> NgsiLdError:
    """Valid JSON whose content breaks an NGSI-LD rule (400 BadRequestData)."""
    return NgsiLdError("BadRequestData", title, detail)


def invalid_request(title: str, detail: str = "") -> NgsiLdError:
    """A request that cannot be read at all: malformed JSON, bad URI parameter (400 InvalidRequest)."""
    return NgsiLdError("InvalidRequest", title, detail)


def not_found(entity_id: str) -> NgsiLdError:
    """The entity does not exist in this tenant (404 ResourceNotFound)."""
    return NgsiLdError("ResourceNotFound", "Entity Not Found", entity_id)


def nonexistent_tenant(tenant: str) -> NgsiLdError:
    """A read on a tenant nothing was ever created in (404; Orion-LD spells the type NonExistingTenant)."""
    return NgsiLdError("NonexistentTenant", "No such tenant", tenant)
