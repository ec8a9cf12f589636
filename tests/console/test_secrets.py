"""The pure parts of sign-in: the one-time code window, the throttle's growth, password hashing, fingerprints."""

from __future__ import annotations

from datetime import datetime, timezone

import pyotp

from gateway.console import accounts, sessions

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = datetime(2026, 11, 28, 12, 0, 10, tzinfo=timezone.utc)


def test_a_code_counts_within_one_step_either_side_and_only_after_the_last_used_step():
    step = int(NOW.timestamp()) // 30
    totp = pyotp.TOTP(SECRET)
    assert accounts.totp_step(SECRET, totp.at(NOW), NOW, 0) == step
    assert accounts.totp_step(SECRET, totp.at(NOW.timestamp() - 30), NOW, 0) == step - 1
    assert accounts.totp_step(SECRET, totp.at(NOW.timestamp() + 30), NOW, 0) == step + 1
    assert accounts.totp_step(SECRET, totp.at(NOW.timestamp() - 60), NOW, 0) is None, "two steps old"
    assert accounts.totp_step(SECRET, totp.at(NOW), NOW, step) is None, "used already"
    assert accounts.totp_step(SECRET, "12345", NOW, 0) is None and accounts.totp_step(SECRET, "abcdef", NOW, 0) is None


def test_tokens_compare_equal_only_when_identical_whatever_their_characters():
    assert sessions.same_token("abc", "abc")
    assert not sessions.same_token("abc", "abd") and not sessions.same_token("abc", "é") and not sessions.same_token("é", "abc")
    assert not sessions.same_token(None, "abc") and not sessions.same_token("abc", "") and not sessions.same_token("", "")


def test_the_wait_grows_from_the_threshold_and_is_capped():
    assert [sessions.wait_after(failures, 5) for failures in (1, 4, 5, 6, 7, 20)] == [0, 0, 2, 4, 8, sessions.MAX_WAIT_SECONDS]


def test_passwords_are_argon2id_and_an_unknown_account_never_matches():
    stored = accounts.hash_password("a long enough password")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert accounts.password_matches(stored, "a long enough password")
    assert not accounts.password_matches(stored, "a long enough passworD")
    assert not accounts.password_matches(None, "a long enough password")


def test_a_fingerprint_is_the_sha256_of_the_vkey_text():
    vkey = "example.org/log+12345678+AQIk1Gw6rC82P2n2muwxTiLVv4aLbE4x4wDCwgJOwjfd"
    # Known answer: printf %s "$vkey" | sha256sum
    assert accounts.fingerprint(vkey) == "0bb436175ab0da2795f9c56561cc4ef353104cd74ac053467b2a3650c4570641"
