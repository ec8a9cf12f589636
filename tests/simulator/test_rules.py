"""The rules file (docs/simulator.md, "Rules"): defaults, every key checked, errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.simulator import Rules, RulesError, load_rules


def test_without_a_file_referrals_are_accepted_and_granted_and_verifications_deterministic():
    rules = Rules()
    assert (rules.referral_decision, rules.close_outcome) == ("accept", "granted")
    assert rules.result_for("income") == "deterministic"


def test_a_rules_file_sets_decisions_and_item_results(tmp_path: Path):
    path = tmp_path / "rules.toml"
    path.write_text(
        '[referral]\ndecision = "accept"\nclose_outcome = "not_eligible"\naward_scheme = "HK_OALA_GD"\n'
        '[verification.results]\nincome = "found"\nvehicles = "cannot_verify"\n',
        "utf-8",
    )
    rules = load_rules(path)
    assert (rules.close_outcome, rules.award_scheme) == ("not_eligible", "HK_OALA_GD")
    assert (rules.result_for("income"), rules.result_for("vehicles"), rules.result_for("deposits")) == ("found", "cannot_verify", "deterministic")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[referral]\ndecision = "maybe"\n', "referral.decision"),
        ('[referral]\naward_amount = 4250\n', "referral.award_amount"),
        ('[referral]\naward_scheme = "hk cssa"\n', "referral.award_scheme"),
        ('[verification.results]\npets = "found"\n', "verification.results.pets"),
        ('[verification.results]\nincome = "maybe"\n', "verification.results.income"),
        ('[referal]\n', "referal"),
        ('referral = 3\n', "referral"),
    ],
)
def test_a_bad_rules_file_is_refused_naming_the_file_and_key(tmp_path: Path, text: str, key: str):
    path = tmp_path / "rules.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(RulesError) as refusal:
        load_rules(path)
    assert refusal.value.key == key and str(path) in str(refusal.value)


def test_a_file_that_is_not_toml_is_refused_naming_the_file(tmp_path: Path):
    path = tmp_path / "rules.toml"
    path.write_text("[referral\n", "utf-8")
    with pytest.raises(RulesError, match="not valid TOML") as refusal:
        load_rules(path)
    assert str(path) in str(refusal.value)
