"""Bearer tokens: verification (any OIDC provider: Keyrock, Keycloak, ...) and the embedded stack's local issuer.

A token is a JWS-signed JWT (RFC 7519) whose claims say who the caller is:
  iss, aud   the issuer and the community it was issued for; both must match, so another community's token fails
  exp        required; an expired token fails
  role       one of the policy's roles (an OIDC provider can map it from its own roles claim: `role_claim`)
  devices    meter/device ids the caller owns (members, devices); `member` names the member; `cups` their supplies
  tenant     optional: the NGSI-LD tenant (= fiware-service) the token may reach; requests naming another are
             refused, requests naming none are sent to it (device ids repeat across tenants: meter-001 of one
             community is not meter-001 of another)
Only asymmetric algorithms are accepted (RS256/ES256 families): `alg: none` and HS256 tokens (whose "key" would
be the public key) are refused before any signature check, as RFC 8725 §3.1 recommends.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHMS = ["ES256", "ES384", "RS256", "RS384", "RS512", "PS256"]
LOCAL_KEY = "signing-key.pem"
LOCAL_JWKS = "jwks.json"
DEFAULT_AUDIENCE = "energytwin"
LOCAL_ISSUER = "urn:energytwin:local-issuer"


class TokenError(Exception):
    """The request carries no usable token; `reason` says why (logged, and in the 401's detail), `kind` is the
    short label the PEP counts it under (missing, malformed, algorithm, key, expired, audience, issuer,
    signature, claims)."""

    def __init__(self, reason: str, kind: str = "invalid"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class Identity:
    """Who calls, after the token was verified."""

    subject: str
    role: str
    member: str | None = None
    devices: frozenset[str] = field(default_factory=frozenset)
    cups: frozenset[str] = field(default_factory=frozenset)
    tenant: str | None = None  # the one NGSI-LD tenant (fiware-service) the token is for; None: any

    def owns(self, entity_id: str) -> bool:
        """An entity is the caller's when its id ends with one of their device ids or CUPS (urn:ngsi-ld:T:ID)."""
        tail = entity_id.rsplit(":", 1)[-1]
        return tail in self.devices or tail in self.cups


@dataclass
class TokenVerifier:
    """Verifies bearer tokens against the issuer's public keys.

    `jwks_url`: the provider's JWKS endpoint (fetched and cached by PyJWT's PyJWKClient, refetched on an unknown
    kid); `key_file`: a JWKS JSON file or a PEM public key (offline, e.g. the local issuer's jwks.json).
    """

    issuer: str
    audience: str = DEFAULT_AUDIENCE
    jwks_url: str | None = None
    key_file: Path | None = None
    role_claim: str = "role"
    leeway_s: float = 30.0
    _keys: dict[str | None, Any] = field(default_factory=dict, init=False, repr=False)
    _client: jwt.PyJWKClient | None = field(default=None, init=False, repr=False)
    # Verified tokens until they expire, keyed by the raw token: a client sends the same token on every request,
    # and an ES256 check per request costs more than the forwarding itself (bench/access_overhead.py measures
    # both). Bounded: at `cache_size` the expired entries go, then the oldest half.
    cache_size: int = 10_000
    _verified: dict[str, tuple[Identity, float]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.jwks_url:
            self._client = jwt.PyJWKClient(self.jwks_url, cache_keys=True, lifespan=300)
        elif self.key_file is not None:
            text = Path(self.key_file).read_text(encoding="utf-8")
            if text.lstrip().startswith("{"):
                for key in jwt.PyJWKSet.from_dict(json.loads(text)).keys:
                    self._keys[key.key_id] = key.key
            else:
                self._keys[None] = serialization.load_pem_public_key(text.encode())
        else:
            raise ValueError("a TokenVerifier needs jwks_url or key_file")

    def _key_for(self, token: str, header: dict[str, Any]) -> Any:
        if self._client is not None:
            try:
                return self._client.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientError as exc:
                raise TokenError(f"no key for this token at {self.jwks_url}: {exc}", "key") from exc
        kid = header.get("kid")
        if kid in self._keys:
            return self._keys[kid]
        if None in self._keys:
            return self._keys[None]
        if len(self._keys) == 1 and kid is None:
            return next(iter(self._keys.values()))
        raise TokenError(f"unknown key id {kid!r}", "key")

    def verify(self, token: str) -> Identity:
        """The caller a token stands for, or TokenError. A cached token is served only before its `exp`; after
        it, the token is verified again in full (and so refused once past `exp` + leeway, as it would be
        uncached)."""
        cached = self._verified.get(token)
        if cached is not None:
            if cached[1] > time.time():
                return cached[0]
            del self._verified[token]
        identity, expires = self._verify(token)
        if len(self._verified) >= self.cache_size:
            self._evict()
        self._verified[token] = (identity, expires)
        return identity

    def _evict(self) -> None:
        now = time.time()
        for token in [t for t, (_, exp) in self._verified.items() if exp <= now]:
            del self._verified[token]
        if len(self._verified) >= self.cache_size:  # all still valid: drop the oldest half (insertion order)
            for token in list(self._verified)[: len(self._verified) // 2 + 1]:
                del self._verified[token]

    def _verify(self, token: str) -> tuple[Identity, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}", "malformed") from exc
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenError(f"algorithm {alg!r} is not accepted (only {', '.join(ALGORITHMS)})", "algorithm")
        key = self._key_for(token, header)
        try:
            claims = jwt.decode(token, key, algorithms=ALGORITHMS, audience=self.audience, issuer=self.issuer,
                                leeway=self.leeway_s, options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token expired", "expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError(f"token issued for another audience (this community is {self.audience!r})",
                             "audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError(f"token from another issuer (expected {self.issuer!r})", "issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenError("bad signature", "signature") from exc
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}", "invalid") from exc
        role = claims.get(self.role_claim)
        if isinstance(role, list):  # OIDC providers often carry a list of roles
            role = role[0] if role else None
        if not isinstance(role, str) or not role:
            raise TokenError(f"token has no {self.role_claim!r} claim", "claims")
        identity = Identity(subject=str(claims["sub"]), role=role, member=claims.get("member"),
                            devices=frozenset(claims.get("devices") or ()), cups=frozenset(claims.get("cups") or ()),
                            tenant=claims.get("tenant") if isinstance(claims.get("tenant"), str) else None)
        return identity, float(claims["exp"])


@dataclass
class LocalIssuer:
    """The embedded stack's token issuer: an EC P-256 key in `<data_dir>/access/`, its JWKS beside it."""

    data_dir: Path
    audience: str = DEFAULT_AUDIENCE
    issuer: str = LOCAL_ISSUER

    @property
    def directory(self) -> Path:
        return Path(self.data_dir) / "access"

    @property
    def jwks_path(self) -> Path:
        return self.directory / LOCAL_JWKS

    def _private_key(self) -> ec.EllipticCurvePrivateKey:
        path = self.directory / LOCAL_KEY
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return key
        self.directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_bytes(pem)
        tmp.replace(path)
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": self.key_id(key), "use": "sig", "alg": "ES256"})
        self.jwks_path.write_text(json.dumps({"keys": [jwk]}, indent=2), encoding="utf-8")
        return key

    @staticmethod
    def key_id(key: ec.EllipticCurvePrivateKey) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_OID, str(key.public_key().public_numbers().x)))[:8]

    def token(self, subject: str, role: str, *, member: str | None = None, devices: list[str] | None = None,
              cups: list[str] | None = None, lifetime_s: float = 12 * 3600, tenant: str | None = None) -> str:
        key = self._private_key()
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": subject, "role": role,
                                  "iat": now, "exp": now + int(lifetime_s), "jti": uuid.uuid4().hex}
        if member:
            claims["member"] = member
        if devices:
            claims["devices"] = sorted(devices)
        if cups:
            claims["cups"] = sorted(cups)
        if tenant:
            claims["tenant"] = tenant
        return jwt.encode(claims, key, algorithm="ES256", headers={"kid": self.key_id(key)})

    def verifier(self) -> TokenVerifier:
        self._private_key()
        return TokenVerifier(issuer=self.issuer, audience=self.audience, key_file=self.jwks_path)
