import pytest

from tests.helpers import REPO


@pytest.fixture(autouse=True)
def _run_in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec paths in messages and generated files are relative to the repository."""
    monkeypatch.chdir(REPO)
