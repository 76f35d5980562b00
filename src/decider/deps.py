"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from decider.auth.service import client_for_key
from decider.errors import Unauthorized
from decider.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="An API key from `decider keys create NAME`")


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_client(
    runtime: RuntimeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The client named by the `Authorization: Bearer <key>` header."""
    if credentials is None or not credentials.credentials.strip():
        raise Unauthorized("send your API key as 'Authorization: Bearer <key>'")
    return client_for_key(engine=runtime.engine, key=credentials.credentials.strip())


ClientDep = Annotated[str, Depends(get_client)]
