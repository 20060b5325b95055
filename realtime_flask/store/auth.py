"""Auth tokens (PyJWT, HS256) and password hashing (scrypt), PocketBase-compatible.

Rules:

1. A token carries exactly PocketBase's five claims: ``collectionId``, ``exp``,
   ``id``, ``refreshable``, ``type="auth"``; a file token (``type="file"``, for
   protected files) the same without ``refreshable``, signed with the
   collection's file secret (``file_secret``).
2. The signing key is the record's ``tokenKey`` plus the collection's secret,
   so rotating ``tokenKey`` (a password change) revokes every earlier token of
   that user, and rotating the secret revokes the whole collection's.
3. Passwords are hashed with scrypt (memory-hard, standard library).  Hashing
   is CPU work: it goes through ``run_blocking``, which the app points at
   gevent's thread pool so the hub keeps serving while a hash is computed.
4. A bad token is never an error here: ``verify_token`` returns None and the
   request is a guest.
5. A password check against a missing account still costs one hash
   (``Passwords.check``), so timing does not tell which accounts exist.
6. No database and no store here: the auth-record operations (login by email,
   token for a record, record from a token) are ``RecordStore``'s, built on these.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import typing as t

import jwt

__all__ = [
    "Blocking",
    "Passwords",
    "TokenClaims",
    "TokenType",
    "file_secret",
    "make_token",
    "new_token_key",
    "read_token_claims",
    "token_from_header",
    "verify_token",
]

#: PocketBase's token types made and read here: sign-in and protected-file access.
TokenType = t.Literal["auth", "file"]
#: Runs a CPU-bound callable; the default calls it inline.
Blocking = t.Callable[[t.Callable[[], bytes]], bytes]

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_PREFIX = "scrypt"


def _inline(fn: t.Callable[[], bytes]) -> bytes:
    return fn()


def new_token_key() -> str:
    """A fresh random per-record token key (50 characters, like PocketBase)."""
    return secrets.token_urlsafe(38)[:50]


class Passwords:
    """scrypt password hashes in the form ``scrypt$n$r$p$salt$hash`` (base64)."""

    def __init__(self, run_blocking: Blocking | None = None, *, n: int = SCRYPT_N) -> None:
        self.run_blocking: Blocking = run_blocking or _inline
        self.n = n
        self._dummy: str | None = None

    def _derive(self, password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        data = password.encode("utf-8", "surrogatepass")
        return self.run_blocking(
            lambda: hashlib.scrypt(data, salt=salt, n=n, r=r, p=p, maxmem=128 * 1024 * 1024)
        )

    def hash(self, password: str) -> str:
        """A new hash of ``password`` (any str, lone surrogates included): a fresh
        16-byte salt, a 64-byte scrypt digest, the instance's cost ``n``."""
        salt = secrets.token_bytes(16)
        digest = self._derive(password, salt, self.n, SCRYPT_R, SCRYPT_P)
        b64 = base64.b64encode
        return (
            f"{_PREFIX}${self.n}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"
        )

    def verify(self, password: str, encoded: str) -> bool:
        """Whether ``password`` hashes to ``encoded`` (with the cost written in it).

        A malformed or foreign ``encoded`` is False, never an error; the
        digests are compared in constant time.
        """
        try:
            prefix, n, r, p, salt, digest = encoded.split("$")
            if prefix != _PREFIX:
                return False
            expected = base64.b64decode(digest)
            actual = self._derive(password, base64.b64decode(salt), int(n), int(r), int(p))
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(actual, expected)

    def check(self, password: str, encoded: str | None) -> bool:
        """``verify`` against the account's stored hash; ``encoded`` None: no such account.

        Without an account (False) a hash is still computed (against a random password
        hashed once per instance), so a missing identity costs what a wrong
        password does and login timing does not reveal which accounts exist.
        """
        if encoded is None:
            if self._dummy is None:
                self._dummy = self.hash(secrets.token_hex(8))
            self.verify(password, self._dummy)
            return False
        return self.verify(password, encoded)


class TokenClaims(t.NamedTuple):
    """An auth token's claims: ``collectionId``, ``id``, ``exp`` (Unix seconds), ``refreshable``."""

    collection_id: str
    record_id: str
    exp: int
    refreshable: bool


def file_secret(collection_secret: str) -> str:
    """The secret of a collection's file tokens, derived from its auth-token secret
    (PocketBase keeps a separate ``fileToken.secret``): neither token verifies as the other."""
    return hashlib.sha256(b"realtime_flask file token\0" + collection_secret.encode()).hexdigest()


def _key(token_key: str, collection_secret: str) -> str:
    return token_key + collection_secret


def make_token(
    *,
    collection_id: str,
    record_id: str,
    token_key: str,
    collection_secret: str,
    duration: int,
    now: float | None = None,
    token_type: TokenType = "auth",
) -> str:
    """An HS256 JWT with PocketBase's claims, valid for ``duration`` seconds.

    ``exp`` is ``int(now) + duration`` (Unix seconds; ``now`` defaults to the
    current time); the key is ``token_key + collection_secret`` (rule 2).
    ``token_type="file"`` makes PocketBase's file token: claims ``collectionId``,
    ``exp``, ``id``, ``type="file"`` (no ``refreshable``); its caller passes
    the collection's file-token secret, not the auth one.
    """
    issued = time.time() if now is None else now
    payload: dict[str, object] = {
        "collectionId": collection_id,
        "exp": int(issued) + duration,
        "id": record_id,
        "type": token_type,
    }
    if token_type == "auth":
        payload["refreshable"] = True
    return jwt.encode(payload, _key(token_key, collection_secret), algorithm="HS256")


def read_token_claims(token: str, token_type: TokenType = "auth") -> TokenClaims | None:
    """The claims of a well-formed token of ``token_type``, *unverified*: only to find
    the record whose ``tokenKey`` then verifies it.  None for anything else (wrong
    ``type``, a claim missing or of the wrong JSON type, not a JWT)."""
    try:
        payload = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        return None
    return _claims(payload, token_type)


def _claims(payload: object, token_type: TokenType = "auth") -> TokenClaims | None:
    if not isinstance(payload, dict) or payload.get("type") != token_type:
        return None
    cid, rid, exp = payload.get("collectionId"), payload.get("id"), payload.get("exp")
    if not isinstance(cid, str) or not isinstance(rid, str) or not isinstance(exp, int):
        return None
    return TokenClaims(cid, rid, exp, bool(payload.get("refreshable", False)))


def verify_token(
    token: str,
    *,
    token_key: str,
    collection_secret: str,
    now: float | None = None,
    token_type: TokenType = "auth",
) -> TokenClaims | None:
    """The claims when the token is an HS256 auth token signed with this key and
    ``exp`` is after ``now`` (Unix seconds, default the current time); else None
    (rule 4): expired, another key or algorithm, unsigned, tampered, malformed."""
    try:
        payload = jwt.decode(
            token,
            _key(token_key, collection_secret),
            algorithms=["HS256"],
            options={"require": ["exp"], "verify_exp": False},
        )
    except jwt.PyJWTError:
        return None
    claims = _claims(payload, token_type)
    current = time.time() if now is None else now
    if claims is None or claims.exp <= current:
        return None
    return claims


def token_from_header(value: str | None) -> str:
    """The token of an ``Authorization`` header: raw, or after ``Bearer `` in any case.

    As in PocketBase, the scheme is optional; here it matches in any case and
    surrounding whitespace is stripped.  ``""`` when there is no header.
    """
    if not value:
        return ""
    if len(value) > 7 and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return value.strip()
