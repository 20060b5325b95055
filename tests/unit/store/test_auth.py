"""Auth tokens and password hashes (``realtime_flask.store.auth``), without a store.

Tokens are checked against PocketBase's shape (HS256, five claims, signed with
the record's tokenKey plus the collection secret); expiry is tested through the
``now`` parameters and through tokens crafted with PyJWT, never by waiting.
Hashes use a small scrypt cost (``n=16``) except where the default is the point.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import re
import secrets
import threading
import time
import typing as t

import jwt
import pytest

from realtime_flask.store.auth import SCRYPT_N
from realtime_flask.store.auth import SCRYPT_P
from realtime_flask.store.auth import SCRYPT_R
from realtime_flask.store.auth import Passwords
from realtime_flask.store.auth import TokenClaims
from realtime_flask.store.auth import make_token
from realtime_flask.store.auth import new_token_key
from realtime_flask.store.auth import read_token_claims
from realtime_flask.store.auth import token_from_header
from realtime_flask.store.auth import verify_token

NOW = 1_700_000_000.0
TOKEN_KEY = new_token_key()
SECRET = secrets.token_urlsafe(32)
KEY = TOKEN_KEY + SECRET


def token(duration: int = 3600, now: float = NOW, **kwargs: t.Any) -> str:
    args: dict[str, t.Any] = {
        "collection_id": "_pb_users_auth_",
        "record_id": "abc123def456ghi",
        "token_key": TOKEN_KEY,
        "collection_secret": SECRET,
        "duration": duration,
        "now": now,
    }
    return make_token(**{**args, **kwargs})


def verify(value: str, now: float = NOW, **kwargs: str) -> TokenClaims | None:
    args: dict[str, t.Any] = {"token_key": TOKEN_KEY, "collection_secret": SECRET, **kwargs}
    return verify_token(value, now=now, **args)


def crafted(payload: dict[str, object], key: str = KEY, algorithm: str = "HS256") -> str:
    """A token signed like ours but with any payload (PyJWT directly)."""
    return jwt.encode(payload, key, algorithm=algorithm)


def claims(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "collectionId": "_pb_users_auth_",
        "exp": int(NOW) + 60,
        "id": "abc123def456ghi",
        "refreshable": True,
        "type": "auth",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def segments(value: str) -> list[dict[str, object]]:
    """The decoded header and payload of a JWT."""
    out = []
    for part in value.split(".")[:2]:
        out.append(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))
    return out


class TestMakeToken:
    def test_carries_exactly_pocketbases_five_claims_signed_hs256(self) -> None:
        header, payload = segments(token(duration=120))
        assert header == {"alg": "HS256", "typ": "JWT"}
        assert payload == {
            "collectionId": "_pb_users_auth_",
            "exp": int(NOW) + 120,
            "id": "abc123def456ghi",
            "refreshable": True,
            "type": "auth",
        }

    def test_is_signed_with_the_token_key_followed_by_the_collection_secret(self) -> None:
        value = token()
        assert jwt.decode(
            value, TOKEN_KEY + SECRET, algorithms=["HS256"], options={"verify_exp": False}
        )
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(
                value, SECRET + TOKEN_KEY, algorithms=["HS256"], options={"verify_exp": False}
            )

    def test_expiry_is_whole_seconds_from_now(self) -> None:
        _, payload = segments(token(duration=10, now=NOW + 0.9))
        assert payload["exp"] == int(NOW) + 10

    def test_without_now_it_counts_from_the_current_time(self) -> None:
        before = int(time.time())
        _, payload = segments(
            make_token(
                collection_id="c",
                record_id="r",
                token_key=TOKEN_KEY,
                collection_secret=SECRET,
                duration=100,
            )
        )
        after = int(time.time())
        assert before + 100 <= t.cast(int, payload["exp"]) <= after + 100


class TestVerifyToken:
    def test_a_fresh_token_verifies_to_its_claims(self) -> None:
        assert verify(token(duration=60)) == TokenClaims(
            collection_id="_pb_users_auth_",
            record_id="abc123def456ghi",
            exp=int(NOW) + 60,
            refreshable=True,
        )

    def test_valid_until_the_second_before_exp_then_expired(self) -> None:
        value = token(duration=60)
        assert verify(value, now=NOW + 59.999) is not None
        assert verify(value, now=NOW + 60) is None  # exp <= now: expired
        assert verify(value, now=NOW + 86400) is None

    def test_without_now_it_checks_against_the_current_time(self) -> None:
        live = token(duration=3600, now=time.time())
        dead = token(duration=3600, now=time.time() - 7200)
        assert verify_token(live, token_key=TOKEN_KEY, collection_secret=SECRET) is not None
        assert verify_token(dead, token_key=TOKEN_KEY, collection_secret=SECRET) is None

    def test_an_expired_token_crafted_with_pyjwt_is_refused(self) -> None:
        value = crafted(claims(exp=int(NOW) - 1))
        assert verify(value) is None
        assert verify(crafted(claims(exp=int(NOW) + 1))) is not None

    def test_a_wrong_collection_secret_is_refused(self) -> None:
        assert verify(token(), collection_secret=secrets.token_urlsafe(32)) is None

    def test_a_rotated_token_key_revokes_earlier_tokens(self) -> None:
        value = token()
        assert verify(value, token_key=new_token_key()) is None
        assert verify(value) is not None

    @pytest.mark.parametrize("kind", ["refresh", "file", "", None, ...])
    def test_a_token_whose_type_is_not_auth_is_refused(self, kind: object) -> None:
        value = crafted(claims(type=kind))
        assert verify(value) is None
        assert read_token_claims(value) is None

    @pytest.mark.parametrize(
        "changes",
        [
            {"exp": ...},  # PocketBase requires exp
            {"exp": float(NOW + 60)},  # not an integer
            {"exp": str(int(NOW) + 60)},
            {"id": ...},
            {"id": 5},
            {"collectionId": ...},
            {"collectionId": ["_pb_users_auth_"]},
        ],
    )
    def test_a_missing_or_mistyped_claim_is_refused(self, changes: dict[str, object]) -> None:
        value = crafted(claims(**changes))
        assert verify(value) is None
        assert read_token_claims(value) is None

    def test_refreshable_defaults_to_false(self) -> None:
        found = verify(crafted(claims(refreshable=...)))
        assert found is not None and found.refreshable is False

    def test_a_tampered_payload_is_refused(self) -> None:
        header, _, signature = token().split(".")
        forged = dict(segments(token())[1], id="someoneelse0000")
        body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
        value = f"{header}.{body}.{signature}"
        assert verify(value) is None
        # Unverified reading still sees the forged id: it only finds the record to check.
        read = read_token_claims(value)
        assert read is not None and read.record_id == "someoneelse0000"

    def test_a_tampered_signature_is_refused(self) -> None:
        value = token()
        last = value[-2]
        flipped = value[:-2] + ("A" if last != "A" else "B") + value[-1]
        assert verify(flipped) is None

    def test_another_algorithm_with_the_same_key_is_refused(self) -> None:
        assert verify(crafted(claims(), algorithm="HS512")) is None

    def test_an_unsigned_token_is_refused(self) -> None:
        value = jwt.encode(claims(), None, algorithm="none")
        assert verify(value) is None
        assert read_token_claims(value) is not None  # well formed, only unverified

    @pytest.mark.parametrize("value", ["", "garbage", "a.b.c", "a.b", "Bearer x.y.z"])
    def test_garbage_is_a_guest_not_an_error(self, value: str) -> None:
        assert verify(value) is None
        assert read_token_claims(value) is None


class TestReadTokenClaims:
    def test_reads_the_claims_of_an_expired_or_foreign_token(self) -> None:
        expired = token(duration=1, now=NOW - 3600)
        foreign = token(collection_secret=secrets.token_urlsafe(32))
        for value in (expired, foreign):
            found = read_token_claims(value)
            assert found is not None
            assert (found.collection_id, found.record_id) == ("_pb_users_auth_", "abc123def456ghi")
        assert t.cast(TokenClaims, read_token_claims(expired)).exp == int(NOW) - 3599


class TestNewTokenKey:
    def test_fifty_url_safe_characters_never_repeated(self) -> None:
        keys = [new_token_key() for _ in range(200)]
        assert all(len(k) == 50 and re.fullmatch(r"[A-Za-z0-9_-]+", k) for k in keys)
        assert len(set(keys)) == len(keys)


class TestPasswords:
    def test_hash_has_the_scrypt_form_and_parameters(self) -> None:
        encoded = Passwords(n=16).hash("correct horse")
        prefix, n, r, p, salt, digest = encoded.split("$")
        assert (prefix, n, r, p) == ("scrypt", "16", str(SCRYPT_R), str(SCRYPT_P))
        assert len(base64.b64decode(salt)) == 16
        assert len(base64.b64decode(digest)) == 64

    def test_default_cost_is_scrypt_n(self) -> None:
        passwords = Passwords()
        encoded = passwords.hash("correct horse")
        assert encoded.split("$")[1] == str(SCRYPT_N)
        assert passwords.verify("correct horse", encoded)

    def test_verifies_the_right_password_only(self) -> None:
        passwords = Passwords(n=16)
        encoded = passwords.hash("correct horse")
        assert passwords.verify("correct horse", encoded)
        assert not passwords.verify("correct horsE", encoded)
        assert not passwords.verify("", encoded)
        assert not passwords.verify("correct horse ", encoded)

    def test_each_hash_has_its_own_salt(self) -> None:
        passwords = Passwords(n=16)
        first, second = passwords.hash("same"), passwords.hash("same")
        assert first != second
        assert passwords.verify("same", first) and passwords.verify("same", second)

    def test_the_cost_is_read_from_the_hash_not_the_instance(self) -> None:
        old = Passwords(n=16).hash("kept across a cost change")
        assert Passwords(n=1024).verify("kept across a cost change", old)

    def test_any_unicode_password_round_trips(self) -> None:
        passwords = Passwords(n=16)
        for password in ("pässwörd", "密码密码密码", "emoji 🔑🔑", "\ud800lone surrogate"):
            assert passwords.verify(password, passwords.hash(password))
            assert not passwords.verify(password + "x", passwords.hash(password))

    @pytest.mark.parametrize(
        "encoded",
        [
            "",
            "plain-text-password",
            "bcrypt$16$8$1$c2FsdA==$ZGlnZXN0",  # not our prefix
            "scrypt$16$8$1$c2FsdA==",  # a part missing
            "scrypt$16$8$1$c2FsdA==$ZGlnZXN0$extra",
            "scrypt$sixteen$8$1$c2FsdA==$ZGlnZXN0",
            "scrypt$16$8$1$!!!$ZGlnZXN0",  # not base64
            "scrypt$15$8$1$c2FsdA==$ZGlnZXN0",  # n not a power of two
        ],
    )
    def test_a_malformed_hash_is_false_not_an_error(self, encoded: str) -> None:
        assert Passwords(n=16).verify("anything", encoded) is False

    def test_hashing_runs_through_run_blocking(self) -> None:
        threads: list[str] = []
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hasher") as pool:

            def off_thread(fn: t.Callable[[], bytes]) -> bytes:
                def run() -> bytes:
                    threads.append(threading.current_thread().name)
                    return fn()

                return pool.submit(run).result()

            passwords = Passwords(off_thread, n=16)
            encoded = passwords.hash("offloaded")
            assert passwords.verify("offloaded", encoded)
        assert len(threads) == 2 and all(name.startswith("hasher") for name in threads)
        assert Passwords(n=16).verify("offloaded", encoded)  # same hash, wherever computed

    def test_check_of_a_missing_account_still_hashes_and_is_false(self) -> None:
        calls: list[int] = []

        def counting(fn: t.Callable[[], bytes]) -> bytes:
            calls.append(1)
            return fn()

        passwords = Passwords(counting, n=16)
        assert passwords.check("whatever", None) is False
        assert len(calls) == 2  # the throwaway hash is made once, then verified against
        calls.clear()
        assert passwords.check("whatever", None) is False
        assert len(calls) == 1  # as costly as checking a wrong password
        encoded = passwords.hash("right password")
        calls.clear()
        assert passwords.check("wrong password", encoded) is False
        assert len(calls) == 1
        assert passwords.check("right password", encoded) is True


class TestTokenFromHeader:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (None, ""),
            ("", ""),
            ("abc.def.ghi", "abc.def.ghi"),  # PocketBase: the scheme is optional
            ("  abc.def.ghi  ", "abc.def.ghi"),
            ("Bearer abc.def.ghi", "abc.def.ghi"),
            ("bearer abc.def.ghi", "abc.def.ghi"),
            ("BEARER abc.def.ghi", "abc.def.ghi"),
            ("Bearer   abc.def.ghi ", "abc.def.ghi"),
            (
                "Bearer ",
                "Bearer",
            ),  # no token after the scheme: the word itself, which never verifies
            ("Bearerabc", "Bearerabc"),
            ("Basic dXNlcjpwYXNz", "Basic dXNlcjpwYXNz"),  # not ours to parse: fails verification
        ],
    )
    def test_forms(self, header: str | None, expected: str) -> None:
        assert token_from_header(header) == expected

    def test_a_bearer_token_round_trips_to_verification(self) -> None:
        value = token()
        assert verify(token_from_header(f"Bearer {value}")) is not None
        assert verify(token_from_header(value)) is not None
