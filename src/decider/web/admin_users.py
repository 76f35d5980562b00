"""`/admin/users`: logins, client keys and review tokens, managed by admins in the browser.

Each form calls the same function of `auth/service.py` as the `decider users` / `decider keys` command, with
the admin's name as the actor, so the account history shows who did what from where. A new key is shown on
the answer to the form that made it, once, never stored nor shown again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from decider.auth import service
from decider.deps import RuntimeDep
from decider.errors import Conflict, DeciderError, InvalidInput
from decider.fields import Text
from decider.runtime import Runtime
from decider.web.pages import AdminDep, CsrfField, check_csrf, flash, render

router = APIRouter(prefix="/admin/users", include_in_schema=False)
T = TypeVar("T")
NameField = Annotated[Text, Form(max_length=100)]
PasswordField = Annotated[Text, Form(max_length=200)]


def _view(runtime: Runtime) -> dict[str, Any]:
    with Session(runtime.engine) as session:
        return {"people": service.list_users(session=session), "keys": service.list_keys(session=session),
                "changes": service.account_history(session=session), "scopes": service.SCOPE_RIGHTS,
                "roles": service.ROLES, "config_problem": runtime.problems.get("config")}


def _page(request: Request, runtime: Runtime, status_code: int = 200, **extra: Any) -> HTMLResponse:
    return render(request, "admin_users.html", status_code=status_code, **_view(runtime), **extra)


def _do(runtime: Runtime, work: Callable[[Session], T]) -> T:
    """`work` in one transaction: all of it is stored, or none (a refusal raises before the commit)."""
    with Session(runtime.engine, expire_on_commit=False) as session:
        result = work(session)
        session.commit()
        return result


def _act(request: Request, runtime: RuntimeDep, csrf: str, work: Callable[[Session], object],
         done: str) -> Response:
    """Check the form token, do `work`, and go back to the page with `done`; a refusal is the page with its
    message, answered with the refusal's status (422 names the field)."""
    check_csrf(request, csrf)
    try:
        _do(runtime, work)
    except DeciderError as exc:
        return _page(request, runtime, exc.status_code, error=exc.message, error_field=exc.field)
    flash(request, done)
    return RedirectResponse("/admin/users", 303)


def _new_key_page(request: Request, runtime: Runtime, csrf: str, name: str, work: Callable[[Session], str],
                  what: str) -> Response:
    check_csrf(request, csrf)
    try:
        key = _do(runtime, work)
    except DeciderError as exc:
        return _page(request, runtime, exc.status_code, error=exc.message, error_field=exc.field)
    response = _page(request, runtime, new_key={"name": name, "key": key, "what": what})
    response.headers["Cache-Control"] = "no-store"  # the key is in this answer only: keep it out of caches
    return response


def _passwords(password: str, again: str) -> str:
    if password != again:
        raise InvalidInput("password_again: the two passwords differ", field="password_again")
    return password


@router.get("")
def users_page(request: Request, runtime: RuntimeDep, user: AdminDep) -> HTMLResponse:
    return _page(request, runtime)


@router.post("/add")
def add_user(request: Request, runtime: RuntimeDep, user: AdminDep, name: NameField = "",
             role: Annotated[Text, Form(max_length=20)] = "reviewer", password: PasswordField = "",
             password_again: PasswordField = "", csrf: CsrfField = "") -> Response:
    return _act(request, runtime, csrf, lambda s: service.add_user(
        session=s, name=name, password=_passwords(password, password_again), role=role, actor=user.name),
        f"Added {role} {name}.")


@router.post("/password")
def set_password(request: Request, runtime: RuntimeDep, user: AdminDep, name: NameField = "",
                 password: PasswordField = "", password_again: PasswordField = "",
                 csrf: CsrfField = "") -> Response:
    return _act(request, runtime, csrf, lambda s: service.set_password(
        session=s, name=name, password=_passwords(password, password_again), actor=user.name),
        f"New password for {name}; their sessions have ended.")


def _disable(session: Session, name: str, actor: str) -> object:
    if name.lower() == actor.lower():
        raise Conflict("you cannot disable your own login (another admin can)", field="name")
    return service.set_disabled(session=session, name=name, disabled=True, actor=actor)


@router.post("/disable")
def disable(request: Request, runtime: RuntimeDep, user: AdminDep, name: NameField = "",
            csrf: CsrfField = "") -> Response:
    return _act(request, runtime, csrf, lambda s: _disable(s, name, user.name),
                f"Disabled {name}: their sessions have ended and their review token is refused.")


@router.post("/enable")
def enable(request: Request, runtime: RuntimeDep, user: AdminDep, name: NameField = "",
           csrf: CsrfField = "") -> Response:
    return _act(request, runtime, csrf, lambda s: service.set_disabled(
        session=s, name=name, disabled=False, actor=user.name), f"Enabled {name}.")


@router.post("/keys/create")
def create_key(request: Request, runtime: RuntimeDep, user: AdminDep, name: NameField = "",
               csrf: CsrfField = "") -> Response:
    return _new_key_page(request, runtime, csrf, name, lambda s: service.create_api_key(
        session=s, name=name, actor=user.name), "client key")


@router.post("/keys/rotate")
def rotate_key(request: Request, runtime: RuntimeDep, user: AdminDep, name: NameField = "",
               csrf: CsrfField = "") -> Response:
    return _new_key_page(request, runtime, csrf, name, lambda s: service.rotate_api_key(
        session=s, name=name, actor=user.name), "client key (the previous one is revoked)")


@router.post("/keys/revoke")
def revoke_key(request: Request, runtime: RuntimeDep, user: AdminDep, name: NameField = "",
               scope: Annotated[Literal["client", "review"], Form()] = "client", csrf: CsrfField = "") -> Response:
    if scope == "review":
        return _act(request, runtime, csrf, lambda s: service.revoke_review_token(
            session=s, user_name=name, actor=user.name), f"Revoked the review token of {name}.")
    return _act(request, runtime, csrf, lambda s: service.revoke_api_key(
        session=s, name=name, actor=user.name), f"Revoked the key of client {name}; clients using it are "
        "refused within 5 s.")
