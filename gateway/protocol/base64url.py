"""Canonical unpadded base64url (RFC 7515 §2, RFC 4648 §5), docs/protocol.md §3.1.

Canonical means: only the 64 URL-safe characters, no padding, no length that leaves a
lone character (length % 4 == 1), and zero trailing bits in the last character. Then
every byte string has exactly one encoding, and a JWS cannot be re-encoded into other
bytes with the same meaning (which would give it another digest).

The canonical checks are ours; the decoding and encoding are pybase64's (SIMD), about
ten times faster than the standard library's on a message-sized payload, which every
acceptance, delivery and receiver decodes (docs/performance.md, "Twelfth pass").
"""

from __future__ import annotations

import binascii

import pybase64

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALUE = {character: value for value, character in enumerate(_ALPHABET)}
# With n = len % 4 characters left over, the last one carries 4 (n = 2) or 2 (n = 3) unused bits.
_UNUSED_BITS = {2: 0x0F, 3: 0x03}


class Base64urlError(ValueError):
    """The text is not canonical unpadded base64url."""


def encode(data: bytes) -> bytes:
    """Unpadded base64url of `data`, as ASCII bytes."""
    return pybase64.urlsafe_b64encode(data).rstrip(b"=")


def encode_str(data: bytes) -> str:
    return encode(data).decode("ascii")


def decode(text: bytes | str) -> bytes:
    """Decode canonical base64url; raise Base64urlError for anything else."""
    if isinstance(text, str):
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            raise Base64urlError("characters outside the base64url alphabet") from None
    else:
        raw = text
    leftover = len(raw) % 4
    if leftover == 1:
        raise Base64urlError("impossible length")
    # pybase64 refuses every other character, but takes "+" and "/" beside the altchars, and "=" as padding.
    if b"+" in raw or b"/" in raw or b"=" in raw:
        raise Base64urlError("characters outside the base64url alphabet")
    try:
        data = pybase64.b64decode(raw + b"=" * (-leftover % 4), altchars=b"-_", validate=True)
    except binascii.Error:
        raise Base64urlError("characters outside the base64url alphabet") from None
    if leftover and _VALUE[raw[-1]] & _UNUSED_BITS[leftover]:
        raise Base64urlError("non-zero trailing bits")
    return data
