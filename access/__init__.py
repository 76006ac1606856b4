"""Access control in front of the twin: who may see and do what.

- `access._tokens`: OAuth2/OIDC bearer JWTs verified with PyJWT (keys from a JWKS URL, a JWKS file or a PEM), and
  the local issuer the embedded stack uses (`energytwin users token`).
- `access._users`: the local issuer's users, secrets hashed with Argon2id (pwdlib), stored in the data dir.
- `access._policy`: the policy file (roles → endpoints they may call → which entities they see).
- `access._pep`: the policy enforcement point (FIWARE sense): a reverse proxy in front of an NGSI-LD broker
  (the embedded one or Orion-LD) or the IoT Agent's north API, filtering bodies as well as paths.
- `access._service_accounts`: the stack's own services' accounts (role `service`), token files kept fresh.
- `access._disclosure`: the public view's defence against differencing (no two answers differing by < k homes).
"""

from access._policy import Policy, load_policy
from access._tokens import Identity, LocalIssuer, TokenError, TokenVerifier

__all__ = ["Identity", "LocalIssuer", "Policy", "TokenError", "TokenVerifier", "load_policy"]
