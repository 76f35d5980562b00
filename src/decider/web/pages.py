"""What every page shares: templates, the logged-in user, CSRF tokens, login and logout."""

from __future__ import annotations

import asyncio
import hmac
import secrets
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from decider.auth import sessions, throttle
from decider.auth.service import Person, landing, may_review, may_submit, verify_login
from decider.db import PROJECT_ROOT
from decider.deps import RuntimeDep
from decider.errors import DeciderError, Forbidden
from decider.fields import Text
from decider.format import num
from decider.runtime import Runtime

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
templates.env.filters["num"] = num
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


def current_person(request: Request, runtime: RuntimeDep) -> Person:
    """The person whose server-side session the cookie names, with their role as the database has it now."""
    sid = request.session.get("sid")
    with runtime.engine.connect() as conn:
        person = sessions.person(conn=conn, sid=sid) if isinstance(sid, str) else None
    if person is None:
        request.session.pop("sid", None)
        raise LoginRequired("log in first")
    request.state.user = person
    return person


PersonDep = Annotated[Person, Depends(current_person)]


def current_user(person: PersonDep) -> Person:
    """A logged-in reviewer or admin: the guard of the review pages. A submitter gets 403, so a page that
    asks for `UserDep` is closed to submitters without saying so itself."""
    if not may_review(person.role):
        raise Forbidden("this page is for reviewers and admins; submit cases at /submit")
    return person


UserDep = Annotated[Person, Depends(current_user)]


def require_admin(user: PersonDep) -> Person:
    if user.role != "admin":
        raise Forbidden("this page is for admins")
    return user


def require_submitter(person: PersonDep) -> Person:
    """A submitter or an admin: the guard of the submission form and its case pages."""
    if not may_submit(person.role):
        raise Forbidden("this page is for submitters and admins")
    return person


SubmitterDep = Annotated[Person, Depends(require_submitter)]


AdminDep = Annotated[Person, Depends(require_admin)]


def render(request: Request, template: str, /, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page from `template`; the context may use any key (a login form passes `name`)."""
    context |= {"user": getattr(request.state, "user", None), "csrf": csrf_token(request),
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
    if request.headers.get("hx-request") == "true":
        # A page's poll (htmx): an error page swapped into part of it would be nonsense; reload it whole, so the
        # person sees the login form or the error as they would have on opening it.
        return Response(status_code=status_code, headers={"HX-Refresh": "true"})
    if status_code == 401 and getattr(request.state, "user", None) is None:  # back here after login, if "here" is a GET
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        back = f"?{urlencode({'next': target})}" if request.method == "GET" else ""
        return RedirectResponse(f"/login{back}", 303)
    return render(request, "error.html", status_code=status_code, message=message)


def wants_html(request: Request) -> bool:
    """A browser opening a URL (it asks for text/html), not an API client, which keeps its JSON."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def not_found_page(request: Request) -> Response:
    """The 404 a browser gets for an unknown URL: a page saying so, with the way back to where it can go.
    Who is logged in is looked up softly (no route ran to do it), so the navigation shows for them."""
    sid = request.session.get("sid")  # pages and every path outside /api/ have a session (http.PageSessions)
    if isinstance(sid, str) and getattr(request.state, "user", None) is None:
        try:
            with request.app.state.runtime.engine.connect() as conn:
                request.state.user = sessions.person(conn=conn, sid=sid)
        except Exception:  # no database: still answer the 404, without the navigation
            request.state.user = None
    return render(request, "not_found.html", status_code=404, path=request.url.path)


@router.get("/login")
def login_form(request: Request, next: str = "/review") -> HTMLResponse:
    return render(request, "login.html", next=safe_next(next))


LOGIN_REFUSED = "Wrong name or password, or too many failed attempts: wait a minute and try again."


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep, name: Annotated[Text, Form(max_length=100)],
                password: Annotated[Text, Form(max_length=200)], csrf: CsrfField = "",
                next: Annotated[Text, Form(max_length=2000)] = "/review") -> Response:
    """Check the password under the throttle and the gate (auth/throttle.py); start a server-side session.

    Unknown names, wrong passwords, disabled users and throttled attempts get the same answer."""
    check_csrf(request, csrf)
    review = runtime.settings.review
    limits, gate = throttle.Limits.of(review), request.app.state.login_gate
    address = request.client.host if request.client else "unknown"
    refused = {"status_code": 401, "error": LOGIN_REFUSED, "next": next, "name": name}
    busy = {"status_code": 503, "error": "Too many logins at once: try again in a few seconds.", "next": next,
            "name": name}
    # Every failure is answered at the same moment after it arrived, whatever failed (and whether a password
    # was checked at all): the timing tells nothing, costs the server nothing, and slows a flood to its pace.
    answer_at = asyncio.get_running_loop().time() + review.login_refusal_delay_seconds
    if gate.memory.waits(name=name, address=address, limits=limits):
        return await _at(request, answer_at, refused)
    if not await run_in_threadpool(throttle.reserve, runtime.engine, name=name, address=address, limits=limits,
                                   memory=gate.memory):
        return await _at(request, answer_at, refused)
    try:
        person = await gate.run(_verify, runtime, name, password)
    except throttle.Busy:
        await run_in_threadpool(_settle, runtime, gate, name, address, limits, None)
        return await _at(request, answer_at, busy)
    if person is None:
        return await _at(request, answer_at, refused)
    sid = await run_in_threadpool(_settle, runtime, gate, name, address, limits, person)
    request.session.clear()  # a new session on login: no fixation
    request.session["sid"] = sid
    return RedirectResponse(landing(person.role, safe_next(next)), 303)


async def _at(request: Request, answer_at: float, answer: dict[str, Any]) -> Response:
    await asyncio.sleep(max(0.0, answer_at - asyncio.get_running_loop().time()))
    response = render(request, "login.html", **answer)
    if answer["status_code"] == 503:
        response.headers["Retry-After"] = "2"
    return response


def _verify(runtime: Runtime, name: str, password: str) -> Person | None:
    with runtime.engine.begin() as conn:
        return verify_login(conn=conn, name=name, password=password)


def _settle(runtime: Runtime, gate: throttle.LoginGate, name: str, address: str, limits: throttle.Limits,
            person: Person | None) -> str | None:
    """Refund the attempt's charge (throttle.refund: all of it on a success; only the name's when the gate
    was busy, so a flood from one address still meets its limit) and, on a success, start the session."""
    with runtime.engine.begin() as conn:
        throttle.refund(conn, name=name, address=address, limits=limits, succeeded=person is not None,
                        memory=gate.memory)
        return sessions.start(conn=conn, person=person) if person else None


@router.post("/logout")
def logout(request: Request, runtime: RuntimeDep, csrf: CsrfField = "") -> Response:
    """End the session on the server too: a copy of the cookie no longer logs anyone in."""
    check_csrf(request, csrf)
    sid = request.session.get("sid")
    if isinstance(sid, str):
        with runtime.engine.begin() as conn:
            sessions.end(conn=conn, sid=sid)
    request.session.clear()
    return RedirectResponse("/login", 303)


@router.get("/")
def home(user: PersonDep) -> Response:
    return RedirectResponse(landing(user.role, "/review"), 303)
