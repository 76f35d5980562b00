"""The reviewer's pages: the queue, the case page, claim next, skip and decide."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from decider.db import now
from decider.deps import RuntimeDep
from decider.errors import Conflict
from decider.registry.cards import out_of_range, percentile
from decider.review import service
from decider.web.pages import UserDep, check_csrf, flash, render

router = APIRouter(prefix="/review", include_in_schema=False)
PAGE = 50


@router.get("")
def queue(request: Request, runtime: RuntimeDep, user: UserDep,
          sort: Annotated[service.Sort, Query()] = "age",
          suggested: Annotated[str | None, Query(max_length=100)] = None,
          model: Annotated[str | None, Query(max_length=100)] = None,
          after: Annotated[str | None, Query(pattern=r"^-?[\d.]+:\d+$")] = None) -> HTMLResponse:
    cursor = None
    if after:
        conf, _, last = after.partition(":")
        cursor = (float(conf), int(last))
    with runtime.engine.connect() as conn:
        stats = service.queue_stats(conn=conn)
        rows = service.queue_page(conn=conn, sort=sort, after=cursor, limit=PAGE,
                                  suggested=suggested or None, model_version=model or None)
    next_after = None
    if len(rows) == PAGE:
        last = rows[-1]
        next_after = f"{last['confidence'] if last['confidence'] is not None else -1.0}:{last['id']}"
    return render(request, "queue.html", stats=stats, rows=rows, sort=sort, suggested=suggested or "",
                  model=model or "", next_after=next_after, labels=runtime.deployment.live.labels,
                  hide_model=_hidden, now=now())


def _hidden(case: dict) -> bool:
    """Reviewers see the model's output only where the level allows it, never on a blind audit."""
    return not case["show_suggestion"] or case["audit"]


@router.post("/next")
def next_case(request: Request, runtime: RuntimeDep, user: UserDep, csrf: Annotated[str, Form()],
              sort: Annotated[service.Sort, Form()] = "age") -> Response:
    check_csrf(request, csrf)
    with runtime.engine.begin() as conn:
        case = service.claim_next(conn=conn, reviewer=user["name"],
                                  lease_seconds=runtime.settings.review.lease_seconds, sort=sort)
    if case is None:
        flash(request, "The queue is empty: nothing is waiting for a review.")
        return RedirectResponse("/review", 303)
    return RedirectResponse(f"/review/cases/{case['id']}", 303)


@router.get("/cases/{case_id}")
def case_page(request: Request, runtime: RuntimeDep, user: UserDep, case_id: int) -> HTMLResponse:
    """Open a case; a pending one is claimed for this reviewer if nobody else holds it."""
    lease = runtime.settings.review.lease_seconds
    held_by_other = None
    with runtime.engine.begin() as conn:
        case = service.get_case(conn=conn, case_id=case_id)
        if case["review_status"] == "pending":
            try:
                case = service.claim(conn=conn, case_id=case_id, reviewer=user["name"], lease_seconds=lease)
            except Conflict as exc:
                held_by_other = exc.message
        events = service.history(conn=conn, case_id=case_id)
    stats = runtime.deployment.live.card.get("feature_stats", {})
    features = [
        {"name": name, "value": value,
         "percentile": percentile(stats[name], value) if name in stats else None,
         "outside": out_of_range(stats[name], value) if name in stats else False}
        for name, value in case["features"].items()
    ]
    return render(request, "case.html", case=case, features=features, events=events,
                  labels=runtime.deployment.live.labels, hide_model=_hidden(case),
                  held_by_other=held_by_other)


@router.post("/cases/{case_id}/decide")
def decide(request: Request, runtime: RuntimeDep, user: UserDep, case_id: int,
           label: Annotated[str, Form(max_length=100)], csrf: Annotated[str, Form()],
           note: Annotated[str, Form(max_length=2000)] = "") -> Response:
    check_csrf(request, csrf)
    try:
        with runtime.engine.begin() as conn:
            service.resolve(conn=conn, case_id=case_id, reviewer=user["name"], label=label,
                            labels=runtime.deployment.live.labels, note=note.strip() or None)
    except Conflict as exc:
        flash(request, exc.message, "error")
        return RedirectResponse(f"/review/cases/{case_id}", 303)
    flash(request, f"Case {case_id}: {label}.")
    return _on_to_next(request, runtime, user)


@router.post("/cases/{case_id}/skip")
def skip(request: Request, runtime: RuntimeDep, user: UserDep, case_id: int,
         csrf: Annotated[str, Form()]) -> Response:
    check_csrf(request, csrf)
    try:
        with runtime.engine.begin() as conn:
            service.release(conn=conn, case_id=case_id, reviewer=user["name"])
    except Conflict as exc:
        flash(request, exc.message, "error")
        return RedirectResponse("/review", 303)
    flash(request, f"Case {case_id} skipped: back in the queue.")
    return _on_to_next(request, runtime, user, skip=case_id)


def _on_to_next(request: Request, runtime: RuntimeDep, user: dict, skip: int | None = None) -> Response:
    """Straight on to the next case, as a reviewer working through the queue expects."""
    with runtime.engine.begin() as conn:
        case = service.claim_next(conn=conn, reviewer=user["name"],
                                  lease_seconds=runtime.settings.review.lease_seconds, skip=skip)
    if case is None:
        return RedirectResponse("/review", 303)
    return RedirectResponse(f"/review/cases/{case['id']}", 303)
