"""What every page shares: templates, the logged-in user, CSRF tokens, login and logout."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from decider.auth.service import authenticate
from decider.db import PROJECT_ROOT
from decider.deps import RuntimeDep
from decider.errors import DeciderError, Forbidden, Unauthorized

templates = Jinja2Templates(directory=str(PROJECT_ROOT / "templates"))  # autoescapes .html


def age(delta: timedelta) -> str:
    """A waiting time as people say it: 40 s, 12 min, 3 h 5 min, 2 d 4 h."""
    seconds = max(int(delta.total_seconds()), 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 60:
        return f"{seconds} s"
    if minutes < 60:
        return f"{minutes} min"
    if hours < 24:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


templates.env.filters["age"] = age
router = APIRouter(include_in_schema=False)


class LoginRequired(DeciderError):
    """Not logged in: pages answer with the login form (see error_page), the API never raises this."""

    status_code = 401


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


# Optional at the form level so a forged post without a token gets the 403 below, not a 422.
CsrfField = Annotated[str, Form(max_length=200)]


def check_csrf(request: Request, token: str) -> None:
    expected = request.session.get("csrf", "")
    if not expected or not hmac.compare_digest(expected.encode(), token.encode()):
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


def render(request: Request, template: str, /, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page from `template`; the context may use any key (a login form passes `name`)."""
    context |= {"user": request.session.get("user"), "csrf": csrf_token(request),
                "flash": request.session.pop("flash", None)}
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def flash(request: Request, message: str, kind: str = "ok") -> None:
    request.session["flash"] = {"message": message, "kind": kind}


def safe_next(target: str | None) -> str:
    """A local path to go to after logging in; anything else (//host, /\\host, a URL) is the queue."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/review"


def error_page(request: Request, message: str, status_code: int) -> Response:
    if status_code == 401 and not request.session.get("user"):  # back here after login, if "here" is a GET
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        back = f"?{urlencode({'next': target})}" if request.method == "GET" else ""
        return RedirectResponse(f"/login{back}", 303)
    return render(request, "error.html", status_code=status_code, message=message)


@router.get("/login")
def login_form(request: Request, next: str = "/review") -> HTMLResponse:
    return render(request, "login.html", next=safe_next(next))


@router.post("/login")
def login(request: Request, runtime: RuntimeDep, name: Annotated[str, Form(max_length=100)],
          password: Annotated[str, Form(max_length=200)], csrf: CsrfField = "",
          next: Annotated[str, Form(max_length=2000)] = "/review") -> Response:
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
    return RedirectResponse(safe_next(next), 303)


@router.post("/logout")
def logout(request: Request, csrf: CsrfField = "") -> Response:
    check_csrf(request, csrf)
    request.session.clear()
    return RedirectResponse("/login", 303)


@router.get("/")
def home(user: UserDep) -> Response:
    return RedirectResponse("/review", 303)
