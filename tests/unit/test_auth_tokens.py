"""Token checks (hotpath.gateway.auth): shared secret and HS256 JWT. No loop, no network."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotpath.gateway.auth import MAX_TOKEN, Granted, Refused, Verifier, make_token

SECRET = "k" * 32
NOW = 1_800_000_000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(header: dict, claims: dict, key: str = SECRET) -> str:
    """Signed independently of hotpath's own make_token."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


HS256 = {"alg": "HS256", "typ": "JWT"}
jwt = Verifier("jwt", SECRET, leeway=5)


def test_a_good_token_is_granted_until_exp_plus_leeway():
    outcome = jwt.verify(_jwt(HS256, {"exp": NOW + 60, "sub": "bot"}), NOW)
    assert outcome == Granted(NOW + 65, int(NOW + 60))


def test_make_token_round_trips():
    token = make_token(SECRET, 30, now=NOW, claims={"sub": "x"})
    assert jwt.verify(token, NOW + 10) == Granted(NOW + 35, int(NOW + 30))
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims == {"sub": "x", "iat": int(NOW), "exp": int(NOW + 30)}


@pytest.mark.parametrize("claims, now, reason", [
    ({"exp": NOW - 6}, NOW, "token expired"),
    ({"exp": NOW}, NOW + 5.5, "token expired"),
    ({}, NOW, "token has no exp"),
    ({"exp": None}, NOW, "token has no exp"),
    ({"exp": "soon"}, NOW, "malformed token claims"),
    ({"exp": True}, NOW, "malformed token claims"),
    ({"exp": NOW + 60, "nbf": NOW + 10}, NOW, "token not yet valid"),
])
def test_claims_are_checked(claims, now, reason):
    assert jwt.verify(_jwt(HS256, claims), now) == Refused(reason)


def test_leeway_allows_small_clock_skew():
    assert isinstance(jwt.verify(_jwt(HS256, {"exp": NOW - 4}), NOW), Granted)
    assert isinstance(jwt.verify(_jwt(HS256, {"exp": NOW + 60, "nbf": NOW + 4}), NOW), Granted)
    strict = Verifier("jwt", SECRET, leeway=0)
    assert strict.verify(_jwt(HS256, {"exp": NOW - 0.5}), NOW) == Refused("token expired")


@pytest.mark.parametrize("header", [
    {"alg": "none"}, {"alg": "None"}, {"alg": "HS512"}, {"alg": "RS256"}, {"alg": "hs256"},
    {}, {"alg": ["HS256"]},
])
def test_only_hs256_is_accepted(header):
    token = _jwt(header, {"exp": NOW + 60})
    assert jwt.verify(token, NOW) == Refused("token algorithm must be HS256")


def test_alg_none_with_an_empty_signature_is_refused():
    head = _b64(b'{"alg":"none","typ":"JWT"}')
    body = _b64(json.dumps({"exp": NOW + 60}).encode())
    assert isinstance(jwt.verify(f"{head}.{body}.", NOW), Refused)
    assert isinstance(jwt.verify(f"{head}.{body}", NOW), Refused)


def test_crit_header_is_refused():
    token = _jwt({**HS256, "crit": ["exp"]}, {"exp": NOW + 60})
    assert jwt.verify(token, NOW) == Refused("unsupported token header 'crit'")


def test_wrong_key_and_tampering_are_refused():
    good = _jwt(HS256, {"exp": NOW + 60, "sub": "a"})
    assert jwt.verify(_jwt(HS256, {"exp": NOW + 60}, key="x" * 32), NOW) == \
        Refused("bad token signature")
    head, body, sig = good.split(".")
    forged_body = _b64(json.dumps({"exp": NOW + 10**6, "sub": "a"}).encode())
    assert jwt.verify(f"{head}.{forged_body}.{sig}", NOW) == Refused("bad token signature")
    for i in range(len(sig)):  # every single-character change of the signature
        flipped = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1:]
        assert isinstance(jwt.verify(f"{head}.{body}.{flipped}", NOW), Refused), i


def test_padding_and_non_canonical_base64_are_refused():
    head, body, sig = _jwt(HS256, {"exp": NOW + 60}).split(".")
    assert isinstance(jwt.verify(f"{head}.{body}.{sig}=", NOW), Refused)
    # The last of 43 characters carries 2 unused bits: another spelling of the same bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]
    assert base64.urlsafe_b64decode(twin + "=") == base64.urlsafe_b64decode(sig + "=")
    assert isinstance(jwt.verify(f"{head}.{body}.{twin}", NOW), Refused)


@pytest.mark.parametrize("token, reason", [
    (None, "missing token"), ("", "missing token"), (123, "missing token"),
    ("a.b", "malformed token"), ("a.b.c.d", "malformed token"), ("é.b.c", "malformed token"),
    ("x" * (MAX_TOKEN + 1), "malformed token"), ("a b.c.d", "malformed token"),
    ("!!.??.**", "malformed token"),
])
def test_junk_is_refused(token, reason):
    assert jwt.verify(token, NOW) == Refused(reason)


def test_shared_secret_mode():
    verifier = Verifier("secret", SECRET)
    assert verifier.verify(SECRET, NOW) == Granted(math.inf)
    assert verifier.verify(SECRET + "x", NOW) == Refused("bad token")
    assert verifier.verify(SECRET[:-1], NOW) == Refused("bad token")
    assert verifier.verify(make_token(SECRET, 60, NOW), NOW) == Refused("bad token")
    assert verifier.verify("", NOW) == Refused("missing token")


def test_mode_none_grants_anything():
    assert Verifier("none", "").verify(None, NOW) == Granted(math.inf)


_b64text = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                   max_size=60)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=50), st.none(), st.integers(),
                 st.tuples(_b64text, _b64text, _b64text).map(".".join)))
def test_garbage_never_raises_and_is_refused(token):
    for verifier in (jwt, Verifier("secret", SECRET)):
        assert isinstance(verifier.verify(token, NOW), Refused)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3), max_leaves=8)),
       st.one_of(st.none(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                 st.text(max_size=5)))
def test_any_signed_claims_give_an_outcome_never_an_exception(claims, exp):
    if exp is not None:
        claims["exp"] = exp
    try:
        token = _jwt(HS256, claims)
    except ValueError:  # json.dumps refuses some floats; nothing to test then
        return
    outcome = jwt.verify(token, NOW)
    assert isinstance(outcome, (Granted, Refused))
    if isinstance(outcome, Granted):
        assert isinstance(exp, (int, float)) and not isinstance(exp, bool) and NOW <= exp + 5


# -- configuration and the token command ------------------------------------------------

def _load(*argv, environ=None):
    import argparse

    from hotpath import config as cfg
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser)
    return cfg.load(parser.parse_args(list(argv)), environ=environ or {})


def test_auth_is_off_by_default():
    g = _load().gateway
    assert (g.auth, g.auth_secret, g.auth_timeout) == ("none", "", 5.0)


@pytest.mark.parametrize("argv, fragment", [
    (("--auth", "jwt"), "--auth jwt needs a secret"),
    (("--auth", "secret"), "--auth secret needs a secret"),
    (("--auth", "jwt", "--auth-secret", "short"), "at least 32 bytes"),
    (("--auth", "basic", "--auth-secret", SECRET), "--auth / HOTPATH_AUTH"),
    (("--auth", "jwt", "--auth-secret", SECRET, "--auth-timeout", "0"), "--auth-timeout"),
    (("--auth", "jwt", "--auth-secret-file", "/nonexistent/secret"), "cannot read"),
])
def test_bad_auth_settings_are_refused(argv, fragment):
    from hotpath.config import ConfigError
    with pytest.raises(ConfigError, match=fragment):
        _load(*argv)


def test_secret_file_is_read_and_stripped(tmp_path):
    from hotpath.config import ConfigError
    path = tmp_path / "secret"
    path.write_text(f"  {SECRET}\n")
    g = _load("--auth", "jwt", "--auth-secret-file", str(path)).gateway
    assert g.auth_secret == SECRET
    g = _load(environ={"HOTPATH_AUTH": "secret", "HOTPATH_AUTH_SECRET_FILE": str(path)}).gateway
    assert (g.auth, g.auth_secret) == ("secret", SECRET)
    with pytest.raises(ConfigError, match="not both"):
        _load("--auth", "jwt", "--auth-secret-file", str(path), "--auth-secret", SECRET)
    path.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        _load("--auth", "jwt", "--auth-secret-file", str(path))


def test_serve_with_auth_but_no_secret_exits_2(capsys):
    from hotpath.__main__ import main
    assert main(["serve", "--auth", "jwt"]) == 2
    assert "--auth jwt needs a secret" in capsys.readouterr().err


def test_token_command_prints_a_token_the_node_accepts(tmp_path, capsys, monkeypatch):
    from hotpath.__main__ import main
    monkeypatch.delenv("HOTPATH_AUTH_SECRET", raising=False)
    monkeypatch.delenv("HOTPATH_AUTH_SECRET_FILE", raising=False)
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    assert main(["token", "--secret-file", str(path), "--ttl", "120", "--sub", "bot-7"]) == 0
    token = capsys.readouterr().out.strip()
    import time
    outcome = Verifier("jwt", SECRET).verify(token, time.time())
    assert isinstance(outcome, Granted) and outcome.expires <= time.time() + 121
    assert main(["token"]) == 2  # no secret anywhere
    assert "at least 32 bytes" in capsys.readouterr().err
