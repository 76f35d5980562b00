"""What every page shares: templates, the logged-in user, CSRF tokens, login and logout."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from decider.auth.service import authenticate
from decider.db import PROJECT_ROOT
from decider.deps import RuntimeDep
from decider.errors import DeciderError, Forbidden, Unauthorized

templates = Jinja2Templates(directory=str(PROJECT_ROOT / "templates"))  # autoescapes .html
router = APIRouter(include_in_schema=False)


class LoginRequired(DeciderError):
    status_code = 303


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, token: str) -> None:
    expected = request.session.get("csrf", "")
    if not expected or not hmac.compare_digest(expected, token):
        raise Forbidden("the form was stale or forged (CSRF check failed): reload the page and try again")


def current_user(request: Request) -> dict[str, str]:
    user = request.session.get("user")
    if not user:
        raise LoginRequired("log in first")
    return user


UserDep = Annotated[dict[str, str], Depends(current_user)]


def require_admin(user: UserDep) -> dict[str, str]:
    if user["role"] != "admin":
        raise Forbidden("this page is for admins")
    return user


AdminDep = Annotated[dict[str, str], Depends(require_admin)]


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context |= {"user": request.session.get("user"), "csrf": csrf_token(request),
                "flash": request.session.pop("flash", None)}
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def flash(request: Request, message: str, kind: str = "ok") -> None:
    request.session["flash"] = {"message": message, "kind": kind}


def error_page(request: Request, message: str, status_code: int) -> Response:
    if status_code == 303:
        return RedirectResponse(f"/login?next={request.url.path}", 303)
    return render(request, "error.html", status_code=status_code, message=message)


@router.get("/login")
def login_form(request: Request, next: str = "/review") -> HTMLResponse:
    return render(request, "login.html", next=next if next.startswith("/") and not next.startswith("//") else "/review")


@router.post("/login")
def login(request: Request, runtime: RuntimeDep, name: Annotated[str, Form(max_length=100)],
          password: Annotated[str, Form(max_length=200)], csrf: Annotated[str, Form()],
          next: Annotated[str, Form()] = "/review") -> Response:
    check_csrf(request, csrf)
    review = runtime.settings.review
    try:
        with Session(runtime.engine, expire_on_commit=False) as session:
            user = authenticate(session=session, name=name, password=password,
                                max_failed=review.max_failed_logins, lockout_seconds=review.lockout_seconds)
            session.commit()
    except Unauthorized as exc:
        return render(request, "login.html", status_code=401, error=exc.message, next=next, name=name)
    request.session.clear()  # a new session on login: no fixation
    request.session["user"] = {"name": user.name, "role": user.role}
    target = next if next.startswith("/") and not next.startswith("//") else "/review"
    return RedirectResponse(target, 303)


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()]) -> Response:
    check_csrf(request, csrf)
    request.session.clear()
    return RedirectResponse("/login", 303)


@router.get("/")
def home(user: UserDep) -> Response:
    return RedirectResponse("/review", 303)
