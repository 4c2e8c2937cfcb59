import pytest

from cot_transfer.domain.errors import PermissionDeniedError, UnauthenticatedError
from cot_transfer.serving.edge.auth import TokenAuth


def test_the_right_token_passes_in_any_header_case() -> None:
    auth = TokenAuth("s3cret")
    auth.check([("application", "cot_transfer"), ("authorization", "Bearer s3cret")])
    auth.check([("Authorization", "bearer s3cret")])


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ([], UnauthenticatedError),
        ([("application", "x")], UnauthenticatedError),
        ([("authorization", "s3cret")], UnauthenticatedError),
        ([("authorization", "Basic czNjcmV0")], UnauthenticatedError),
        ([("authorization", "Bearer wrong")], PermissionDeniedError),
        ([("authorization", "Bearer ")], PermissionDeniedError),
    ],
)
def test_missing_or_wrong_tokens_are_refused_without_echoing_the_secret(
    metadata: list[tuple[str, str]], error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        TokenAuth("s3cret").check(metadata)
    assert "s3cret" not in str(caught.value)


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TokenAuth.from_env(None) is None
    monkeypatch.setenv("TOKEN_FOR_TEST", "abc")
    auth = TokenAuth.from_env("TOKEN_FOR_TEST")
    assert auth is not None
    auth.check([("authorization", "Bearer abc")])
    monkeypatch.setenv("TOKEN_FOR_TEST", "")
    with pytest.raises(RuntimeError, match="TOKEN_FOR_TEST"):
        TokenAuth.from_env("TOKEN_FOR_TEST")


def test_empty_token_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenAuth("")
