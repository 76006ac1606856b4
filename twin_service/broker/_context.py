"""JSON-LD @context handling: turn contexts into term maps, expand names to IRIs and compact them back.

Smart Data Models and the NGSI-LD core context are flat term maps (term -> IRI or {"@id": IRI}), so a term-map
approach is enough and keeps a request free of a JSON-LD processor: the core context always applies and wins over
user terms, unknown terms fall to the core `@vocab` (`https://uri.etsi.org/ngsi-ld/default-context/<term>`), and
compaction only shortens IRIs a term of the request's context names, so with no user context SDM attributes come
back as full IRIs, exactly as Orion-LD answers.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from datamodels.context import CORE_CONTEXT, load_vendored

from ._errors import NgsiLdError

log = logging.getLogger(__name__)

DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
# Every published core context version is served by the vendored v1.8 document (FiLiP still sends v1.6):
# the terms an entity uses did not change between them, and the broker never fetches the core.
_CORE_URL = re.compile(r"^https?://uri\.etsi\.org/ngsi-ld/(v1/)?ngsi-ld-core-context(-v\d+\.\d+)?\.jsonld$")
_MAX_NESTING = 8  # contexts referencing contexts; deeper is surely a loop
_MAX_ACTIVE_CONTEXTS = 256
FETCH_TIMEOUT_S = 3.0  # a context server that slow would stall every request naming it; 503 instead


class ContextCache(Protocol):
    """Where fetched context documents survive a restart (the broker's SQLite file)."""

    def get_context_document(self, url: str) -> dict[str, Any] | None: ...

    def put_context_document(self, url: str, document: dict[str, Any]) -> None: ...


def is_core_context(url: str) -> bool:
    """True for any NGSI-LD core context URL, whatever its version."""
    return bool(_CORE_URL.match(url))


@dataclass
class TermMap:
    """Term definitions of one context (or several merged in order): term -> absolute IRI."""

    terms: dict[str, str] = field(default_factory=dict)
    vocab: str | None = None

    def overlay(self, other: TermMap) -> TermMap:
        """A new map where `other`'s terms replace ours (JSON-LD: later contexts win)."""
        return TermMap({**self.terms, **other.terms}, other.vocab or self.vocab)


def _resolve_iri(value: str, raw: Mapping[str, Any], depth: int = 0) -> str:
    """Expand a compact IRI `prefix:suffix` whose prefix is a term of the same context."""
    if value.startswith("@") or ":" not in value or depth > _MAX_NESTING:
        return value
    prefix, suffix = value.split(":", 1)
    if suffix.startswith("//"):
        return value
    target = raw.get(prefix)
    if isinstance(target, Mapping):
        target = target.get("@id")
    if isinstance(target, str):
        return _resolve_iri(target, raw, depth + 1) + suffix
    return value


def _terms_of_object(obj: Mapping[str, Any]) -> TermMap:
    """Term definitions of one inline context object; keywords other than @vocab are ignored."""
    terms: dict[str, str] = {}
    for term, definition in obj.items():
        if term.startswith("@"):
            continue
        if isinstance(definition, Mapping) and "@context" in definition:
            # A scoped context (JSON-LD 1.1 §4.1.8) would give the sub-attributes of `term` other names; NGSI-LD
            # attributes carry no embedded @context (ETSI GS CIM 009 §5.5.7), and a term map cannot apply one.
            raise NgsiLdError("BadRequestData", "Invalid @context",
                              f"the term {term!r} has a scoped @context, which NGSI-LD attributes cannot use")
        iri = definition.get("@id") if isinstance(definition, Mapping) else definition
        if isinstance(iri, str):
            terms[term] = _resolve_iri(iri, obj)
    vocab = obj.get("@vocab")
    return TermMap(terms, vocab if isinstance(vocab, str) else None)


class ActiveContext:
    """The names one request expands and compacts with: the user's terms, overlaid by the core terms."""

    def __init__(self, user: TermMap, core: TermMap, echo: str | list[Any] | dict[str, Any]) -> None:
        self._user = user
        self._core = core
        self.vocab = core.vocab or DEFAULT_VOCAB
        self.echo = echo  # what responses name as their @context (Link header or body)
        reverse: dict[str, str] = {}
        # Among user terms for one IRI, JSON-LD compaction picks the shortest, then the least; core terms win.
        for term, iri in sorted(user.terms.items(), key=lambda kv: (len(kv[0]), kv[0]), reverse=True):
            reverse[iri] = term
        for term, iri in core.terms.items():
            if not iri.startswith("@"):
                reverse[iri] = term
        self._reverse = reverse
        # Prefixes for compact IRIs (JSON-LD 1.1 IRI compaction): terms whose IRI ends in a gen-delim, such as
        # the core context's `ngsi-ld` -> https://uri.etsi.org/ngsi-ld/; longest IRI first (shortest result).
        prefixes = {**user.terms, **core.terms}
        self._prefixes = sorted(((t, i) for t, i in prefixes.items() if i.endswith(("/", "#")) and ":" not in t),
                                key=lambda ti: (-len(ti[1]), len(ti[0]), ti[0]))

    def expand(self, term: str) -> str:
        """The IRI a term names: core term, user term, compact or absolute IRI, else the core @vocab."""
        iri = self._core.terms.get(term) or self._user.terms.get(term)
        if iri is not None and not iri.startswith("@"):
            return iri
        if ":" in term:
            prefix, suffix = term.split(":", 1)
            base = self._core.terms.get(prefix) or self._user.terms.get(prefix)
            if base is not None and not suffix.startswith("//"):
                return base + suffix
            return term  # already an absolute IRI (http://…, urn:…)
        return self.vocab + term

    def compact(self, iri: str) -> str:
        """The shortest name the request's context has for an IRI; the IRI itself when it has none."""
        term = self._reverse.get(iri)
        if term is not None:
            return term
        if iri.startswith(self.vocab):
            rest = iri[len(self.vocab):]
            if rest and self.expand(rest) == iri:
                return rest
        for prefix, base in self._prefixes:  # e.g. ngsi-ld:default-context/speed when `speed` means another IRI
            if iri.startswith(base) and len(iri) > len(base):
                candidate = f"{prefix}:{iri[len(base):]}"
                if not iri[len(base):].startswith("//") and self.expand(candidate) == iri:
                    return candidate
        return iri


class ContextResolver:
    """Loads @context values into ActiveContexts: vendored files first, then cache, then HTTP fetch."""

    def __init__(self, cache: ContextCache, fetch_timeout_s: float = FETCH_TIMEOUT_S) -> None:
        self._cache = cache
        self._fetch_timeout_s = fetch_timeout_s
        self._by_url: dict[str, TermMap] = {}
        self._core: TermMap | None = None
        # Contexts given by URL only (the usual case: Link header, SDM list) are built once, not per request.
        self._active: dict[tuple[str, ...], ActiveContext] = {}

    def core(self) -> TermMap:
        """The core context's terms, loaded once from the vendored file."""
        if self._core is None:
            try:
                document = load_vendored(CORE_CONTEXT)
            except (KeyError, OSError) as exc:
                log.error("vendored core @context %s unreadable (%s); every request will fail until "
                          "datamodels/contexts/ holds it", CORE_CONTEXT, exc)
                raise NgsiLdError("LdContextNotAvailable", "Core @context not available", CORE_CONTEXT) from exc
            core = TermMap()
            for part in _context_parts(document.get("@context")):
                if isinstance(part, Mapping):
                    core = core.overlay(_terms_of_object(part))
            self._core = TermMap(core.terms, core.vocab or DEFAULT_VOCAB)
        return self._core

    async def activate(self, context: str | list[Any] | dict[str, Any] | None) -> ActiveContext:
        """The ActiveContext for a request's @context (None: the core context only)."""
        core = self.core()
        if context is None:
            context = CORE_CONTEXT
        key = tuple(context) if isinstance(context, list) else (context,)
        if all(isinstance(part, str) for part in key):
            active = self._active.get(key)
            if active is None:
                if len(self._active) >= _MAX_ACTIVE_CONTEXTS:
                    self._active.clear()  # clients inventing context lists must not grow memory without bound
                active = self._active[key] = ActiveContext(await self._load(context, depth=0), core, context)
            return active
        return ActiveContext(await self._load(context, depth=0), core, context)

    async def _load(self, context: Any, depth: int) -> TermMap:
        if depth > _MAX_NESTING:
            raise NgsiLdError("BadRequestData", "Invalid @context", "contexts nest too deep (a loop?)")
        merged = TermMap()
        for part in _context_parts(context):
            if isinstance(part, str):
                merged = merged.overlay(await self._load_url(part, depth))
            elif isinstance(part, Mapping):
                merged = merged.overlay(_terms_of_object(part))
            elif part is not None:
                raise NgsiLdError("BadRequestData", "Invalid @context",
                                  f"an @context entry must be a URL or an object, not {json.dumps(part)[:80]}")
        return merged

    def forget(self, url: str) -> None:
        """Drop what was built from one context URL (it was deleted or reloaded through /jsonldContexts); for a
        hosted context, under every host name it was reached by."""
        key = hosted_key(url)
        for known in [u for u in self._by_url if u == url or (key is not None and hosted_key(u) == key)]:
            del self._by_url[known]
        self._active.clear()

    async def _load_url(self, url: str, depth: int) -> TermMap:
        if is_core_context(url):
            return TermMap()  # applied anyway, and it wins
        cached = self._by_url.get(url)
        if cached is not None:
            return cached
        hosted = hosted_key(url)
        document = (self._cache.get_context_document(hosted) if hosted else None) or self._vendored(url) \
            or self._cache.get_context_document(url)
        if document is None:
            document = await self._fetch(url)
            self._cache.put_context_document(url, document)
        terms = await self._load(document.get("@context"), depth + 1)
        self._by_url[url] = terms
        return terms

    @staticmethod
    def _vendored(url: str) -> dict[str, Any] | None:
        try:
            return load_vendored(url)
        except KeyError:
            return None
        except OSError as exc:
            log.warning("vendored @context for %s missing (%s); fetching it instead", url, exc)
            return None

    async def _fetch(self, url: str) -> dict[str, Any]:
        if not url.startswith(("http://", "https://")) or any(c.isspace() or ord(c) < 0x20 or c == "\x7f"
                                                               for c in url):
            raise NgsiLdError("BadRequestData", "Invalid @context", f"not an http(s) URL: {url!r}")
        try:
            async with httpx.AsyncClient(timeout=self._fetch_timeout_s, follow_redirects=True) as client:
                answer = await client.get(url, headers={"Accept": "application/ld+json, application/json"})
                answer.raise_for_status()
                document = answer.json()
        except httpx.InvalidURL as exc:  # not an HTTPError: a URL httpx cannot even send
            raise NgsiLdError("BadRequestData", "Invalid @context", f"{url!r}: {exc}") from None
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("@context %s could not be fetched (%s); requests naming it get 503 until it can",
                        url, exc)
            raise NgsiLdError("LdContextNotAvailable", "Unable to download the @context", url) from exc
        if not isinstance(document, dict) or "@context" not in document:
            log.warning("@context %s is not a JSON-LD context document; requests naming it get 503", url)
            raise NgsiLdError("LdContextNotAvailable", "Not a JSON-LD @context document", url)
        log.info("fetched @context %s; cached in the broker's database", url)
        return document


HOSTED_PREFIX = "hosted:"  # how a context stored through POST /jsonldContexts is kept in the contexts table
_HOSTED_PATH = "/ngsi-ld/v1/jsonldContexts/"


def hosted_key(url: str) -> str | None:
    """The store key of a context this broker hosts, when `url` names one (any host: the broker has several names)."""
    at = url.find(_HOSTED_PATH)
    if at < 0 or not url.startswith(("http://", "https://")):
        return None
    local_id = url[at + len(_HOSTED_PATH):]
    return HOSTED_PREFIX + local_id if local_id and "/" not in local_id else None


def _context_parts(context: Any) -> list[Any]:
    """A context value as the list of its parts (a URL, an object, or a list of both)."""
    if isinstance(context, list):
        return context
    return [context]
