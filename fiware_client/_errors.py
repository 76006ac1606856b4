"""One error hierarchy for "the FIWARE service said no", carrying what it said.

The NGSI-LD broker answers errors as ProblemDetails (IETF RFC 7807) whose `type` is one of the error types of
ETSI GS CIM 009 v1.8.1 clause 5.5.2 (`https://uri.etsi.org/ngsi-ld/errors/<Name>`); each type is recognised here,
once, and becomes its own exception class. The IoT Agent answers `{"name": ..., "message": ...}` as
iotagent-node-lib does (`lib/errors.js`). Every exception carries the request and the response.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

ERROR_TYPE_PREFIX = "https://uri.etsi.org/ngsi-ld/errors/"


class FiwareError(RuntimeError):
    """A FIWARE service refused or failed a request, or could not be reached (`status` is then None)."""

    def __init__(self, message: str, *, status: int | None = None, request: httpx.Request | None = None,
                 response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.request = request
        self.response = response


class BrokerError(FiwareError):
    """The NGSI-LD broker said no: `status` and the ProblemDetails `type`, `title` and `detail` it sent."""

    problem_types: ClassVar[tuple[str, ...]] = ()  # the ETSI error type names this class stands for

    def __init__(self, message: str, *, status: int | None = None, type: str | None = None,
                 title: str | None = None, detail: str | None = None, request: httpx.Request | None = None,
                 response: httpx.Response | None = None) -> None:
        super().__init__(message, status=status, request=request, response=response)
        self.type = type
        self.title = title
        self.detail = detail

    @property
    def kind(self) -> str | None:
        """The ETSI error type without its prefix (`ResourceNotFound`), None when the body was no ProblemDetails."""
        return self.type.rsplit("/", 1)[-1] if self.type else None


class BadRequest(BrokerError):
    """400: the request breaks an NGSI-LD rule (BadRequestData) or cannot be read (InvalidRequest)."""

    problem_types = ("BadRequestData", "InvalidRequest")


class NotFound(BrokerError):
    """404: no such entity, attribute or subscription (ResourceNotFound)."""

    problem_types = ("ResourceNotFound",)


class NonexistentTenant(NotFound):
    """404: the tenant was never written to. Orion-LD spells the type NonExistingTenant; both are this class."""

    problem_types = ("NonexistentTenant", "NonExistingTenant")


class Conflict(BrokerError):
    """409: the entity or subscription already exists (AlreadyExists)."""

    problem_types = ("AlreadyExists",)


class OperationNotSupported(BrokerError):
    """422/501: the broker does not offer this operation (OperationNotSupported, NoMultiTenantSupport)."""

    problem_types = ("OperationNotSupported", "NoMultiTenantSupport")


class TooManyResults(BrokerError):
    """403: the query asks for more than the broker answers at once (TooManyResults, TooComplexQuery)."""

    problem_types = ("TooManyResults", "TooComplexQuery")


class ContextNotAvailable(BrokerError):
    """503: the broker cannot load the @context named in the request (LdContextNotAvailable)."""

    problem_types = ("LdContextNotAvailable",)


class InternalError(BrokerError):
    """500: the broker failed (InternalError)."""

    problem_types = ("InternalError",)


class BrokerUnavailable(BrokerError):
    """The broker did not answer (connection refused, timed out) or answered 503, after every retry."""


class TemporalApiMissing(BrokerError):
    """The broker does not serve the NGSI-LD temporal API (404 without ProblemDetails on its path, or 501)."""


class BatchError(BrokerError):
    """A batch operation was refused for some entities (207); `errors` maps entity id -> ProblemDetails."""

    def __init__(self, message: str, *, errors: dict[str, dict[str, Any]], succeeded: list[str],
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.errors = errors
        self.succeeded = succeeded


class IotAgentError(FiwareError):
    """The IoT Agent north API said no: `name` (DEVICE_NOT_FOUND, DUPLICATE_GROUP, ...) and its `message`."""

    def __init__(self, message: str, *, name: str | None = None, agent_message: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.name = name
        self.agent_message = agent_message


_BY_TYPE: dict[str, type[BrokerError]] = {
    name: cls
    for cls in (BadRequest, NotFound, NonexistentTenant, Conflict, OperationNotSupported, TooManyResults,
                ContextNotAvailable, InternalError)
    for name in cls.problem_types
}
_BY_STATUS: dict[int, type[BrokerError]] = {400: BadRequest, 404: NotFound, 409: Conflict, 500: InternalError,
                                             503: BrokerUnavailable}


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The ProblemDetails body of a response, {} when the body is something else."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) and ("type" in body or "title" in body) else {}


def _where(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.path}"


def broker_error(response: httpx.Response, *, temporal: bool = False) -> BrokerError:
    """The exception for a broker's error answer: the class its ProblemDetails type names, else its status's."""
    problem = problem_of(response)
    kind = str(problem.get("type", "")).rsplit("/", 1)[-1] or None
    detail = problem.get("detail")
    title = problem.get("title")
    said = detail or title or response.text[:300] or response.reason_phrase
    fields: dict[str, Any] = {"status": response.status_code, "type": problem.get("type"), "title": title,
                              "detail": detail, "request": response.request, "response": response}
    if temporal and (response.status_code == 501 or (response.status_code == 404 and not problem)):
        return TemporalApiMissing(
            f"{_where(response)}: the broker at {response.request.url.host}:{response.request.url.port} does not "
            f"serve the NGSI-LD temporal API (HTTP {response.status_code}); run one with history (Orion-LD + "
            f"Mintaka, or the embedded broker)", **fields)
    cls = _BY_TYPE.get(kind or "") or _BY_STATUS.get(response.status_code, BrokerError)
    return cls(f"{_where(response)}: HTTP {response.status_code} {kind or ''}: {said}".replace("  ", " "),
               **fields)


def iot_agent_error(response: httpx.Response) -> IotAgentError:
    """The exception for an IoT Agent error answer (`{"name", "message"}`, or whatever else it sent)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    name = body.get("name") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    said = f"{name}: {message}" if name else response.text[:300] or response.reason_phrase
    return IotAgentError(f"{_where(response)}: HTTP {response.status_code} {said}", name=name,
                         agent_message=message, status=response.status_code, request=response.request,
                         response=response)
