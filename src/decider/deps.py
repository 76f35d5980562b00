"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from decider.auth.service import Person, client_for_key, person_for_token
from decider.cases.ingest import Ingestor
from decider.errors import Forbidden, Unauthorized
from decider.runtime import Runtime

# Two schemes in /docs, one per kind of credential (auth/service.py says what each may do).
_client_key = HTTPBearer(auto_error=False, scheme_name="ClientKey",
                         description="A client key from `decider keys create NAME`: submit cases, read your own "
                         "cases, report their outcomes.")
_review_token = HTTPBearer(auto_error=False, scheme_name="ReviewToken",
                           description="A person's review token from `decider users token NAME`: acts as that "
                           "person on /api/v1/review; an admin's token also reads monitoring, models and policy.")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_client_key)]


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_ingestor(request: Request) -> Ingestor:
    return request.app.state.ingestor


IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]


def key_of(authorization: str | None) -> str:
    """The key in an `Authorization: Bearer <key>` header, as HTTPBearer reads it; 401 without one."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send your API key as 'Authorization: Bearer <key>'")
    return key.strip()


def _key(credentials: HTTPAuthorizationCredentials | None) -> str:
    return key_of(f"{credentials.scheme} {credentials.credentials}" if credentials else None)


async def get_client(runtime: RuntimeDep, credentials: Bearer) -> str:
    """The client named by a client key in `Authorization: Bearer <key>`.

    `async` so FastAPI does not hop to a worker thread for it: the key is usually in the cache.
    """
    return client_for_key(engine=runtime.engine, key=_key(credentials))


ClientDep = Annotated[str, Depends(get_client)]


def get_reviewer(runtime: RuntimeDep,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_review_token)]) -> Person:
    """The person a review token belongs to: the reviewer is who the credential says, never the body."""
    with runtime.engine.connect() as conn:
        return person_for_token(conn=conn, key=_key(credentials))


ReviewerDep = Annotated[Person, Depends(get_reviewer)]


def get_admin(person: ReviewerDep) -> Person:
    if person.role != "admin":
        raise Forbidden("this endpoint is for admins: send an admin's review token")
    return person


AdminTokenDep = Annotated[Person, Depends(get_admin)]
