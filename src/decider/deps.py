"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from decider.auth.service import client_for_key
from decider.cases.ingest import Ingestor
from decider.errors import Unauthorized
from decider.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="An API key from `decider keys create NAME`")


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_ingestor(request: Request) -> Ingestor:
    return request.app.state.ingestor


IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]


async def get_client(
    runtime: RuntimeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The client named by the `Authorization: Bearer <key>` header.

    `async` so FastAPI does not hop to a worker thread for it: the key is usually in the cache.
    """
    if credentials is None or not credentials.credentials.strip():
        raise Unauthorized("send your API key as 'Authorization: Bearer <key>'")
    return client_for_key(engine=runtime.engine, key=credentials.credentials.strip())


ClientDep = Annotated[str, Depends(get_client)]
