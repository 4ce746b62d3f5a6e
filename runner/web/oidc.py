"""Console login through an OpenID Connect provider (authorization code flow, PyJWT).

The provider says who someone is (a claim of the ID token, `email` by default); flowrun's
identities say what they may do: the claim must name a user of the store or identities file
(runner/runs/identity.py), whose roles and tenants apply. Discovery, JWKS and the token request
use the standard library's urllib, run off the event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import anyio

from runner.errors import ExitCode, FlowrunError

STATE_COOKIE = "flowrun_oidc"
STATE_MAX_AGE_S = 600
TIMEOUT_S = 10
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")


class OidcError(FlowrunError):
    """A sign-in through the provider failed: nobody is logged in (HTTP 401)."""

    exit_code = ExitCode.INVALID


@dataclass(frozen=True)
class OidcConfig:
    """`flowrun serve --oidc-issuer … --oidc-client-id …` (secret: $FLOWRUN_OIDC_CLIENT_SECRET)."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    claim: str = "email"  # the ID token claim that names the flowrun user
    redirect_uri: str | None = None  # default: this console's /oidc/callback


class Oidc:
    """One provider: its metadata and keys fetched once, a login started and finished."""

    def __init__(self, config: OidcConfig, secret: bytes) -> None:
        self.config = config
        self.secret = secret
        self._meta: dict[str, Any] | None = None
        self._keys: Any = None

    # -- the provider --------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            meta = _get_json(url)
            if str(meta.get("issuer", "")).rstrip("/") != self.config.issuer.rstrip("/"):
                raise OidcError(
                    f"the provider at {self.config.issuer} names another issuer "
                    f"({meta.get('issuer')!r})"
                )
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(meta.get(key), str):
                    raise OidcError(f"the provider's metadata has no {key}")
            self._meta = meta
        return self._meta

    # -- step 1: send the browser to the provider ----------------------------------------------
    async def start(self, redirect_uri: str) -> tuple[str, str]:
        """(the provider's authorization URL, the signed state cookie to set)."""
        meta = await anyio.to_thread.run_sync(self.metadata)
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email profile",
            "state": state,
            "nonce": nonce,
        }
        if "S256" in (meta.get("code_challenge_methods_supported") or []):
            digest = hashlib.sha256(verifier.encode()).digest()
            params["code_challenge"] = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            params["code_challenge_method"] = "S256"
        else:
            verifier = "-"
        body = f"{state}.{nonce}.{verifier}.{int(time.time())}"
        cookie = f"{body}.{self._sign(body)}"
        sep = "&" if "?" in meta["authorization_endpoint"] else "?"
        return meta["authorization_endpoint"] + sep + urllib.parse.urlencode(params), cookie

    # -- step 2: the provider sends the browser back with a code -------------------------------
    async def finish(
        self, *, code: str | None, state: str | None, cookie: str | None, redirect_uri: str
    ) -> str:
        """The value of the configured claim for the person the provider vouches for."""
        if not code or not state:
            raise OidcError("the provider sent no code back (the sign-in was cancelled)")
        parts = (cookie or "").split(".")
        if len(parts) != 5 or not hmac.compare_digest(parts[4], self._sign(".".join(parts[:4]))):
            raise OidcError("the sign-in was not started here, or its cookie is gone")
        want_state, nonce, verifier, issued = parts[:4]
        if not issued.isdigit() or time.time() - int(issued) > STATE_MAX_AGE_S:
            raise OidcError("the sign-in took too long; start again")
        if not hmac.compare_digest(want_state, state):
            raise OidcError("the sign-in's state does not match (a forged or replayed answer)")
        claims = await anyio.to_thread.run_sync(
            lambda: self._exchange(code, redirect_uri, None if verifier == "-" else verifier)
        )
        if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise OidcError("the ID token's nonce does not match this sign-in")
        value = claims.get(self.config.claim)
        if not isinstance(value, str) or not value:
            raise OidcError(f"the ID token has no {self.config.claim!r} claim")
        if self.config.claim == "email" and claims.get("email_verified") is False:
            raise OidcError("the provider says this email address is not verified")
        return value

    def _exchange(self, code: str, redirect_uri: str, verifier: str | None) -> dict[str, Any]:
        import jwt

        meta = self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if verifier is not None:
            form["code_verifier"] = verifier
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.config.client_secret:
            pair = f"{urllib.parse.quote(self.config.client_id, safe='')}:" + urllib.parse.quote(
                self.config.client_secret, safe=""
            )
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = self.config.client_id
        answer = _post_form(meta["token_endpoint"], form, headers)
        token = answer.get("id_token")
        if not isinstance(token, str):
            raise OidcError("the provider's token answer has no id_token")
        if self._keys is None:
            self._keys = jwt.PyJWKClient(meta["jwks_uri"], timeout=TIMEOUT_S)
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if kid is not None:
                key = self._keys.get_signing_key(kid)
            else:  # a provider with one key may leave `kid` out
                keys = self._keys.get_signing_keys()
                if len(keys) != 1:
                    raise OidcError("the ID token names no key (kid) and the provider has several")
                key = keys[0]
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(ALGORITHMS),
                audience=self.config.client_id,
                issuer=meta["issuer"],
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.PyJWTError as e:
            raise OidcError(f"the ID token does not verify: {e}") from None
        return claims

    def _sign(self, text: str) -> str:
        return hmac.new(self.secret, ("oidc|" + text).encode(), hashlib.sha256).hexdigest()


def _get_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r:
            data = json.loads(r.read(1_000_000))
    except (OSError, ValueError) as e:
        raise OidcError(f"cannot read {url}: {e}") from None
    if not isinstance(data, dict):
        raise OidcError(f"{url} did not answer a JSON object")
    return data


def _post_form(url: str, form: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=urllib.parse.urlencode(form).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
            data = json.loads(r.read(1_000_000))
    except urllib.error.HTTPError as e:
        detail = e.read(2000).decode(errors="replace")
        raise OidcError(f"the provider refused the code ({e.code}): {detail}") from None
    except (OSError, ValueError) as e:
        raise OidcError(f"cannot reach the provider's token endpoint: {e}") from None
    if not isinstance(data, dict):
        raise OidcError("the provider's token answer is not a JSON object")
    return data
