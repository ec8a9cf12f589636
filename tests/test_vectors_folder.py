"""External vectors: absent -> skip with the reason, except under CI=true, where absence fails."""

from __future__ import annotations

import pytest

from tests import conftest


def test_missing_vectors_skip_outside_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(conftest, "SHARED_VECTORS", tmp_path / "absent")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="external test vectors not found"):
        conftest.shared_vectors("identity.json")


def test_missing_vectors_fail_under_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(conftest, "SHARED_VECTORS", tmp_path / "absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true requires them"):
        conftest.shared_vectors("identity.json")
