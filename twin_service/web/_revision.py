"""The manager's coefficient revision: the agreement in force against a method's new coefficients, member by member.

`GET /api/views/manager/revision?method=optimal` (manager, admin). The community part computes it
(energytwin/page_views.py `CommunityAccounts.revision`, which runs community/revision.py as `energytwin community
revise` does): for each installation, both sets of coefficients settled on the expected year learnt from the
accounts' period, self-consumed kWh and EUR before and after, the simple payback of each member under both, the
rules each set breaks, and the command that adopts the new set. The page only shows it: writing the next
distributor file stays the manager's explicit CLI step (`--approve`), never a click on a shared screen.

Computed on demand (an LP over the year's hours, about a second for a few members; the source caches it), so the
manager view does not pay for it on every load. Without a community file, or a source without revisions, the
answer says why instead of figures; a failure (too little history, infeasible rules) is the reason, not a 500.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._live import now_iso
from ._problem import problem
from ._views import _require, _source

log = logging.getLogger(__name__)

METHODS = ("fixed", "proportional", "optimal", "optimal-mean")  # community/sharing.py's, as the CLI offers them


async def revision_view(request: Request) -> Response:
    _require(request, "manager")
    method = request.query_params.get("method", "optimal")
    if method not in METHODS:
        return problem(400, "Invalid method", f"method must be one of {', '.join(METHODS)}, not {method!r}")
    body: dict[str, object] = {"serverTime": now_iso(), "method": method, "revision": None, "unavailable": None}
    source = _source(request)
    compute = getattr(source, "revision", None)
    if compute is None:
        body["unavailable"] = ("no community file is configured for this page (start it with --community FILE): "
                               "a revision needs the community's members, rules and coefficients")
        return JSONResponse(body)
    try:
        body["revision"] = await asyncio.to_thread(compute, method)
    except Exception as exc:  # noqa: BLE001 - too little history, infeasible rules, a bad coefficient file: shown
        log.warning("coefficient revision (%s) unavailable: %s", method, exc)
        body["unavailable"] = f"the revision could not be computed: {exc}"
    return JSONResponse(body)
