"""Bearer-token check for the gRPC API.

The token is never in the config file: the config names an environment variable that holds
it (a Kubernetes Secret in the overlays), and the token never appears in logs or errors.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable

from cot_transfer.domain.errors import PermissionDeniedError, UnauthenticatedError

AUTHORIZATION = "authorization"
_BEARER = "bearer "


class TokenAuth:
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an empty token would let everyone in")
        self._token = token.encode()

    @classmethod
    def from_env(cls, variable: str | None) -> TokenAuth | None:
        """The check for the token in ``variable``; None when no variable is configured.

        A configured variable that is unset or empty is an error rather than an open door.
        """
        if not variable:
            return None
        token = os.environ.get(variable, "")
        if not token:
            raise RuntimeError(f"auth_token_env names {variable}, but that environment variable is empty or unset")
        return cls(token)

    def check(self, metadata: Iterable[tuple[str, str | bytes]]) -> None:
        values = [value for key, value in metadata if key.lower() == AUTHORIZATION]
        if not values:
            raise UnauthenticatedError("this service requires 'authorization: Bearer <token>' metadata")
        value = values[0] if isinstance(values[0], str) else values[0].decode(errors="replace")
        if not value.lower().startswith(_BEARER):
            raise UnauthenticatedError("the authorization metadata must be 'Bearer <token>'")
        if not hmac.compare_digest(value[len(_BEARER) :].strip().encode(), self._token):
            raise PermissionDeniedError("the bearer token is not valid for this service")
