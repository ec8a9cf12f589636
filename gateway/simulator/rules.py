"""The simulated jurisdiction's business rules: how it answers referrals and verifications (docs/simulator.md).

Rules are data: a TOML file read once at start into a frozen `Rules`, checked with
errors that name the file, the key and the reason. Without a file the simulator
accepts every referral and closes it `granted`, and answers every verification item
deterministically from the ids of the request.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from gateway.adapters.schemes import SCHEME_LISTS

REFERRAL_DECISIONS = ("accept", "decline")
DECLINE_REASONS = ("not_within_competence", "person_not_identified", "insufficient_information", "duplicate_referral", "other")
CLOSE_OUTCOMES = ("granted", "refused", "withdrawn_by_applicant", "not_eligible", "transferred", "none")
"""`none` leaves an accepted referral open: no `referral.close` is sent."""
VERIFICATION_ITEMS = ("income", "real_estate", "vehicles", "deposits", "securities", "business_registration", "social_benefits")
ITEM_RESULTS = ("found", "not_found", "cannot_verify", "deterministic")
"""`deterministic` answers an item from a hash of the case, member and item (the default)."""

_SCHEME = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*")
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,14})(\.[0-9]{1,4})?")


class RulesError(ValueError):
    """A rules file that cannot be used: names the file, the key and the reason."""

    def __init__(self, path: Path | None, key: str, reason: str) -> None:
        self.path, self.key, self.reason = path, key, reason
        where = f"{path}: " if path is not None else ""
        super().__init__(f"{where}{key}: {reason}" if key else f"{where}{reason}")


@dataclass(frozen=True, slots=True)
class Rules:
    """How the jurisdiction decides; every field has the default behaviour of docs/simulator.md."""

    referral_decision: str = "accept"
    decline_reason: str = "insufficient_information"
    close_outcome: str = "granted"
    award_scheme: str | None = None
    """The scheme of a granted award; None: the jurisdiction's default (HK_CSSA, MO_IAS_GENERAL, DIBAO)."""
    award_amount: str = "4250.00"
    """The monthly amount of a granted award, in the jurisdiction's currency."""
    item_results: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Per verification item, a fixed result; items not named are `deterministic`."""

    def result_for(self, item: str) -> str:
        return self.item_results.get(item, "deterministic")


def check_for_jurisdiction(rules: Rules, jurisdiction: str, path: Path | None = None) -> None:
    """Refuse rules that `jurisdiction` cannot follow: an award scheme not in its list would have every granted
    close refused by the hub (`scheme-unknown`, PROTO-6.1-9)."""
    listed = SCHEME_LISTS.get(jurisdiction)
    if rules.award_scheme is not None and listed is not None and listed.get(rules.award_scheme) is None:
        codes = ", ".join(scheme.code for scheme in listed.schemes)
        raise RulesError(path, "referral.award_scheme",
                         f"{rules.award_scheme} is not a scheme of {jurisdiction}, whose schemes are {codes}")


def load_rules(path: Path) -> Rules:
    """The rules in the TOML file `path`; RulesError naming the file, key and reason otherwise."""
    try:
        document = tomllib.loads(Path(path).read_text("utf-8"))
    except OSError as error:
        raise RulesError(path, "", f"cannot read the rules file: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise RulesError(path, "", f"not valid TOML: {error}") from None
    return rules_from_document(document, path)


def rules_from_document(document: Mapping[str, Any], path: Path | None = None) -> Rules:
    """`Rules` from a parsed TOML document; the same checks as `load_rules`."""
    _only(document, {"referral", "verification"}, "", path)
    referral = _table(document, "referral", path)
    verification = _table(document, "verification", path)
    _only(referral, {"decision", "decline_reason", "close_outcome", "award_scheme", "award_amount"}, "referral.", path)
    _only(verification, {"results"}, "verification.", path)
    results = _table(verification, "results", path, prefix="verification.")
    _only(results, set(VERIFICATION_ITEMS), "verification.results.", path)
    defaults = Rules()
    return Rules(
        referral_decision=_choice(referral, "decision", REFERRAL_DECISIONS, defaults.referral_decision, "referral.", path),
        decline_reason=_choice(referral, "decline_reason", DECLINE_REASONS, defaults.decline_reason, "referral.", path),
        close_outcome=_choice(referral, "close_outcome", CLOSE_OUTCOMES, defaults.close_outcome, "referral.", path),
        award_scheme=_pattern(referral, "award_scheme", _SCHEME, None, "referral.", path, "an uppercase scheme code like HK_CSSA"),
        award_amount=_pattern(referral, "award_amount", _DECIMAL, defaults.award_amount, "referral.", path, 'a decimal string like "4250.00"'),
        item_results=MappingProxyType(
            {item: _choice(results, item, ITEM_RESULTS, "deterministic", "verification.results.", path) for item in results}
        ),
    )


def _table(document: Mapping[str, Any], key: str, path: Path | None, prefix: str = "") -> Mapping[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise RulesError(path, prefix + key, "must be a table")
    return value


def _only(table: Mapping[str, Any], allowed: set[str], prefix: str, path: Path | None) -> None:
    for key in table:
        if key not in allowed:
            raise RulesError(path, prefix + key, f"unknown key; allowed: {', '.join(sorted(allowed))}")


def _choice(table: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str, prefix: str, path: Path | None) -> str:
    value = table.get(key, default)
    if value not in choices:
        raise RulesError(path, prefix + key, f"must be one of {', '.join(choices)}")
    return value


def _pattern(
    table: Mapping[str, Any], key: str, pattern: re.Pattern[str], default: str | None, prefix: str, path: Path | None, what: str
) -> str | None:
    value = table.get(key, default)
    if value is not None and (not isinstance(value, str) or pattern.fullmatch(value) is None or len(value) > 48):
        raise RulesError(path, prefix + key, f"must be {what}")
    return value
