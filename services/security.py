"""Password hashing (argon2id), signed access tokens and API keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher(type=Type.ID)
# Verified against when the username is unknown, so both failures cost the same time: a
# hash made once, with the hasher's parameters, of a random password nobody kept (a test
# checks the parameters still match). Written out rather than made at import, which cost
# every process argon2's 64 MiB at start-up: the API's peak memory (BENCHMARKS.md,
# eighteenth round).
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$yBn/6h+HbkwKObrkoB02qQ"
    "$PVnx+2W5oVnrh008C+9BlsLHWMpnQuC6uVHv45oeMdk"
)

API_KEY_PREFIX = "nfod_"
TOKEN_PREFIX = "v1."


# An argon2id hash with these parameters takes 64 MiB while it runs, and its four lanes run
# in threads: here 0.14-0.18 s of wall time and 0.24-0.28 s of CPU, so one hash already uses
# most of two cores. The hashes a process makes at once are therefore bounded: more at once
# would not finish a burst sooner, and unbounded, a burst of sign-ins (or an attacker's)
# costs 64 MiB each: ten at once took a process to 754 MB (BENCHMARKS.md, nineteenth round).
# The rest wait for a turn (the API waits on its event loop first: api.deps.hashing_turn).
DEFAULT_HASH_SLOTS = 1
_hash_slots = threading.Semaphore(DEFAULT_HASH_SLOTS)


def limit_hashing(slots: int) -> None:
    """Make at most ``slots`` password hashes at once from now on (Settings.password_hash_slots)."""
    if slots < 1:
        raise ValueError("at least one password hash must be able to run")
    global _hash_slots
    _hash_slots = threading.Semaphore(slots)


def hash_password(password: str) -> str:
    with _hash_slots:
        return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``password_hash`` was made from. With no hash (an
    unknown user) a hash nobody knows the password of is verified instead, so that both
    failures cost the same."""
    try:
        with _hash_slots:
            verified = _hasher.verify(password_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return verified and password_hash is not None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    version: int
    expires_at: int


def issue_token(secret: str, *, user_id: str, version: int, now: datetime, ttl: int) -> str:
    payload = {
        "sub": user_id,
        "ver": version,
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + ttl,
        "jti": secrets.token_urlsafe(8),
    }
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    sig = _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())
    return f"{TOKEN_PREFIX}{body}.{sig}"


def read_token(secret: str, token: str, *, now: datetime) -> TokenClaims | None:
    """The token's claims if the signature is good and it has not expired, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    try:
        body, sig = token[len(TOKEN_PREFIX) :].split(".", 1)
        expected = _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(sig, expected):
            return None
        payload = json.loads(_unb64(body))
        claims = TokenClaims(str(payload["sub"]), int(payload["ver"]), int(payload["exp"]))
    except (ValueError, KeyError, TypeError):
        return None
    if claims.expires_at <= now.timestamp():
        return None
    return claims


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # Keys are 256 random bits, so a fast hash is safe; only the hash is stored.
    return hashlib.sha256(key.encode()).hexdigest()
