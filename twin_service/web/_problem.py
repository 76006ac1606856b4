"""Error answers of the page's JSON API as ProblemDetails (IETF RFC 9457), the shape the NGSI-LD API answers with.

`type` is a URN named after the title (the page has no error catalogue of its own), `status` repeats the HTTP
status, `detail` says what to do. Every /api/ and /notify error of the page goes through `problem`.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

MEDIA_TYPE = "application/problem+json"


def problem_body(status: int, title: str, detail: str) -> dict[str, object]:
    return {"type": "urn:energytwin:errors:" + "".join(w.capitalize() for w in title.split()), "title": title,
            "status": status, "detail": detail}


def problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(problem_body(status, title, detail), status_code=status, media_type=MEDIA_TYPE)
