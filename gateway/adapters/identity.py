"""Identity-document checks that a regular expression cannot make (docs/protocol.md §6.1, PROTO-6.1-3 to 6.1-5).

The schema (`schemas/defs.json`, *identity_document*) checks each kind's format. This
module checks what is left where the issuer publishes the rules:

- `cn_resident_id`: GB 11643-1999. Area code (GB/T 2260: first digit 1-6, never the
  permit codes 810000/820000/830000), birth date `YYYYMMDD` (a real date, from
  1900-01-01 to today), check character by ISO 7064:1983 MOD 11-2 (Annex A).
- `cn_residence_permit_hk_mo`: the same layout and check character with the area code
  810000 (Hong Kong residents) or 820000 (Macao residents), per the State Council's
  《港澳台居民居住证申领发放办法》 (国办发〔2018〕81号) art. 3. The area code says nothing
  about the place or year of birth, so no birth-place rule applies.
- `hkid`: the Hong Kong Identity Card check digit (letters A=10..Z=35, a one-letter
  prefix padded with a leading space worth 36, weights 9..2, mod 11), as implemented by
  koblas/stdnum-js `src/hk/hkid.ts` and CPAN Business::HK::IdentityCard.

For mainland numbers the checks run in that order and the first failure is reported.

No check algorithm is published for `mo_resident_id` (the Macao BIR's check digit),
`home_return_permit`, `exit_entry_permit_hk_mo` and `passport` (none has a check digit
its issuer documents; identique/idnumbers marks the Macao ID `checksum: False`): their
format is the schema's job and this module accepts them as they are.

A fault's code is its refusal code in the catalogue (§11.2, gateway/protocol/errors.py):
`identity-check-digit-invalid` (PROTO-6.1-3), `identity-birth-date-invalid`
(PROTO-6.1-4), `identity-area-code-invalid` (PROTO-6.1-5). A fault never quotes the
number: `IdentityFault.detail` is a fixed sentence (identity numbers are personal data
and must not reach a log or a problem).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

CHECK_DIGIT_INVALID = "identity-check-digit-invalid"
BIRTH_DATE_INVALID = "identity-birth-date-invalid"
AREA_CODE_INVALID = "identity-area-code-invalid"

_EARLIEST_BIRTH = date(1900, 1, 1)
_MOD11_2_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)  # 2^(18-i) mod 11
_MOD11_2_CHARACTERS = "10X98765432"  # indexed by the weighted sum mod 11
_PERMIT_AREA_CODES = frozenset({"810000", "820000"})
_HKID_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2)
_HKID_SPACE = 36

# Layouts only: the semantic rules (area code, date, check) are checked below, so a
# month 13 is parsed here and reported as a birth-date fault.
_MAINLAND_LAYOUT = re.compile(r"[0-9]{17}[0-9Xx]")
_HKID_LAYOUT = re.compile(r"([A-Z]{1,2})([0-9]{6})(?:\(([0-9A])\)|([0-9A]))")
_FORMAT_ONLY_KINDS = frozenset({"mo_resident_id", "home_return_permit", "exit_entry_permit_hk_mo", "passport"})


@dataclass(frozen=True, slots=True)
class IdentityFault:
    """Why a number was refused: one of the module's codes and a fixed sentence that never quotes the number."""

    code: str
    detail: str


_AREA_FAULT = IdentityFault(AREA_CODE_INVALID, "The area code is not one this kind of document is issued with.")
_BIRTH_FAULT = IdentityFault(BIRTH_DATE_INVALID, "The birth date in the number is impossible or out of range.")
_CHECK_FAULT = IdentityFault(CHECK_DIGIT_INVALID, "The check character does not match the rest of the number.")


def check_identity_document(kind: str, number: str, today: date) -> IdentityFault | None:
    """The first fault of a document number that has its kind's layout, or None (PROTO-6.1-3).

    Requires `kind` to be an *identity_document_kind* and, for the three kinds with a
    check algorithm, `number` to have the kind's layout: 17 digits and a check
    character for mainland numbers (a lowercase `x` is read as `X`); for HKID 1-2
    uppercase letters, 6 digits and the check character with or without round
    brackets (`A123456(3)` or `A1234563`). A number outside its layout raises
    ValueError: refusing it is the schema's job, which runs first.
    """
    if kind == "cn_resident_id":
        return _check_mainland(number, today, area_ok=_is_resident_area)
    if kind == "cn_residence_permit_hk_mo":
        return _check_mainland(number, today, area_ok=_is_permit_area)
    if kind == "hkid":
        return _check_hkid(number)
    if kind in _FORMAT_ONLY_KINDS:
        return None
    raise ValueError("not an identity_document_kind")


def mod11_2_check_character(first17: str) -> str:
    """The GB 11643-1999 check character ('0'-'9' or 'X') of the first 17 digits (ISO 7064 MOD 11-2).

    Requires exactly 17 ASCII digits.
    """
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("MOD 11-2 needs exactly 17 digits")
    total = sum(int(digit) * weight for digit, weight in zip(first17, _MOD11_2_WEIGHTS))
    return _MOD11_2_CHARACTERS[total % 11]


def hkid_check_character(prefix: str, digits: str) -> str:
    """The HKID check character ('0'-'9' or 'A') of a prefix of 1-2 uppercase letters and 6 digits.

    Requires `prefix` to be 1 or 2 letters A-Z and `digits` exactly 6 ASCII digits.
    """
    if not re.fullmatch(r"[A-Z]{1,2}", prefix) or not re.fullmatch(r"[0-9]{6}", digits):
        raise ValueError("an HKID needs a prefix of 1 or 2 letters A-Z and 6 digits")
    values = [_HKID_SPACE] * (2 - len(prefix)) + [ord(letter) - ord("A") + 10 for letter in prefix]
    values += [int(digit) for digit in digits]
    remainder = sum(value * weight for value, weight in zip(values, _HKID_WEIGHTS)) % 11
    check = 0 if remainder == 0 else 11 - remainder
    return "A" if check == 10 else str(check)


def _check_mainland(number: str, today: date, *, area_ok: Callable[[str], bool]) -> IdentityFault | None:
    if not _MAINLAND_LAYOUT.fullmatch(number):
        raise ValueError("a mainland identity number has 17 digits and a check character")
    if not area_ok(number[:6]):
        return _AREA_FAULT
    if not _is_birth_date(number[6:14], today):
        return _BIRTH_FAULT
    if mod11_2_check_character(number[:17]) != number[17].upper():
        return _CHECK_FAULT
    return None


def _is_resident_area(area: str) -> bool:
    """A GB/T 2260 mainland area code starts with 1-6; 81/82/83 are the permits' (and 7, 9 are unused)."""
    return area[0] in "123456"


def _is_permit_area(area: str) -> bool:
    """810000 Hong Kong residents, 820000 Macao residents (国办发〔2018〕81号 art. 3); 830000 (Taiwan) is not this kind."""
    return area in _PERMIT_AREA_CODES


def _is_birth_date(yyyymmdd: str, today: date) -> bool:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return _EARLIEST_BIRTH <= born <= today


def _check_hkid(number: str) -> IdentityFault | None:
    match = _HKID_LAYOUT.fullmatch(number)
    if match is None:
        raise ValueError("an HKID has 1-2 letters, 6 digits and a check character")
    prefix, digits, bracketed, bare = match.groups()
    if hkid_check_character(prefix, digits) != (bracketed or bare):
        return _CHECK_FAULT
    return None
