"""The reviewer's pages: the queue, the case page, claim next, skip and decide."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from decider.auth.service import Person
from decider.cases.schemas import CaseId
from decider.db import now
from decider.deps import RuntimeDep
from decider.errors import Conflict, DeciderError
from decider.fields import Text
from decider.registry.cards import out_of_range, percentile
from decider.review import insight, service
from decider.web.pages import CsrfField, UserDep, check_csrf, flash, render
from decider.webhooks.service import deliveries

router = APIRouter(prefix="/review", include_in_schema=False)
PAGE = 50


@router.get("")
def queue(request: Request, runtime: RuntimeDep, user: UserDep,
          sort: Annotated[service.Sort, Query()] = "age",
          suggested: Annotated[Text | None, Query(max_length=100)] = None,
          model: Annotated[Text | None, Query(max_length=100)] = None,
          after: Annotated[str | None, Query(pattern=service.CURSOR_PATTERN)] = None) -> HTMLResponse:
    """The queue: how many wait and since when, and one page of them in the chosen order."""
    request.session["sort"] = sort  # "Next case" and the case after a decision follow this order
    with runtime.engine.connect() as conn:
        stats = service.queue_stats(conn=conn)
        rows, next_after = service.queue_page(conn=conn, sort=sort, after=after, limit=PAGE,
                                              suggested=suggested or None, model_version=model or None)
    dep = runtime.deployment
    models = [m.id for m in (dep.live, dep.candidate, *dep.shadows) if m is not None]
    return render(request, "queue.html", undo=_undo(request), stats=stats, rows=rows, sort=sort,
                  suggested=suggested or "",
                  model=model or "", after=after, next_after=next_after, labels=dep.live.labels,
                  models=models, hide_model=service.model_hidden, now=now())


@router.post("/next")
def next_case(request: Request, runtime: RuntimeDep, user: UserDep, csrf: CsrfField = "") -> Response:
    """Claim the next case in the queue's order and open it."""
    check_csrf(request, csrf)
    return _on_to_next(request, runtime, user, empty="The queue is empty: nothing is waiting for a review.")


@router.get("/cases/{case_id}")
def case_page(request: Request, runtime: RuntimeDep, user: UserDep, case_id: CaseId) -> Response:
    """Open a case; a pending one is claimed for this reviewer if nobody else holds it."""
    lease = runtime.settings.review.lease_seconds
    held_by_other = None
    with runtime.engine.begin() as conn:
        case = service.get_case(conn=conn, case_id=case_id)  # an unknown id: the error page, by the handler
        if case["review_status"] == "pending":
            try:
                case = service.claim(conn=conn, case_id=case_id, reviewer=user.name, lease_seconds=lease)
            except Conflict as exc:
                held_by_other = exc.message
        events = service.history(conn=conn, case=case)
        sent = deliveries(conn, case_id) if user.role == "admin" else []
    hidden = service.model_hidden(case)
    may_correct = case["status"] == "decided" and (user.role == "admin" or case["decided_by"] == user.name)
    return render(request, "case.html", case=service.reviewer_view(case), hide_model=hidden,
                  features=_features(runtime, case["features"]), events=[service.event_view(e, hidden) for e in events],
                  labels=runtime.deployment.live.labels, held_by_other=held_by_other, undo=_undo(request),
                  may_correct=may_correct, deliveries=sent, why=_why(insight.explanation(runtime, case)),
                  precedents=insight.precedents(runtime, case))


def _why(explanation: dict[str, Any] | None, top: int = 8) -> dict[str, Any] | None:
    """The explanation as the page shows it: the `top` largest shares, the rest summed, bars to one scale."""
    if explanation is None:
        return None
    shares = explanation["features"]
    widest = max((abs(f["contribution"]) for f in shares), default=0.0) or 1.0
    return explanation | {"top": shares[:top], "rest": len(shares[top:]), "widest": widest,
                          "rest_sum": sum(f["contribution"] for f in shares[top:])}


def _undo(request: Request) -> dict[str, Any] | None:
    """The decision this person may still undo (set by `decide`), while its window lasts."""
    last = request.session.get("undo")
    if not last or last["until"] < now().timestamp():
        request.session.pop("undo", None)
        return None
    return last


def _features(runtime: RuntimeDep, values: dict[str, float | None]) -> list[dict[str, Any]]:
    """Each value the client sent against the live model's training distribution: the model's features
    first, in its order, then the other fields of the record (null where the client had no value)."""
    stats = runtime.deployment.live.card.get("feature_stats", {})
    order = [n for n in runtime.deployment.live.features if n in values] + \
        [n for n in values if n not in runtime.deployment.live.features]
    return [{"name": name, "value": values[name], "stats": stats.get(name),
             "percentile": percentile(stats[name], v) if name in stats and (v := values[name]) is not None else None,
             "outside": out_of_range(stats[name], v) if name in stats and (v := values[name]) is not None else False}
            for name in order]


@router.post("/cases/{case_id}/decide")
def decide(request: Request, runtime: RuntimeDep, user: UserDep, case_id: CaseId,
           label: Annotated[Text, Form(max_length=100)], csrf: CsrfField = "",
           note: Annotated[Text, Form(max_length=2000)] = "") -> Response:
    """Record the reviewer's decision, then straight on to the next case."""
    check_csrf(request, csrf)
    try:
        with runtime.engine.begin() as conn:
            service.resolve(conn=conn, case_id=case_id, reviewer=user.name, label=label,
                            labels=runtime.deployment.live.labels, note=note.strip() or None,
                            undo_seconds=runtime.settings.review.undo_seconds)
    except Conflict as exc:
        flash(request, exc.message, "error")
        return RedirectResponse(f"/review/cases/{case_id}", 303)
    window = runtime.settings.review.undo_seconds
    if window:
        request.session["undo"] = {"case_id": case_id, "label": label, "until": now().timestamp() + window}
    flash(request, f"Case #{case_id} decided: {label}.")
    return _on_to_next(request, runtime, user)


@router.post("/cases/{case_id}/undo")
def undo(request: Request, runtime: RuntimeDep, user: UserDep, case_id: CaseId, csrf: CsrfField = "") -> Response:
    """Take back the decision just made (U): the case opens again, yours to decide."""
    check_csrf(request, csrf)
    request.session.pop("undo", None)
    review = runtime.settings.review
    try:
        with runtime.engine.begin() as conn:
            service.undo(conn=conn, case_id=case_id, reviewer=user.name, within_seconds=review.undo_seconds,
                         lease_seconds=review.lease_seconds)
    except Conflict as exc:
        flash(request, exc.message, "error")
        return RedirectResponse("/review", 303)
    flash(request, f"Case #{case_id}: decision undone; decide it again.")
    return RedirectResponse(f"/review/cases/{case_id}", 303)


@router.post("/cases/{case_id}/correct")
def correct(request: Request, runtime: RuntimeDep, user: UserDep, case_id: CaseId,
            label: Annotated[Text, Form(max_length=100)], csrf: CsrfField = "",
            note: Annotated[Text, Form(max_length=2000)] = "") -> Response:
    """Correct a decided case (an admin: any; a reviewer: their own), with a note saying why."""
    check_csrf(request, csrf)
    try:
        with runtime.engine.begin() as conn:
            service.correct(conn=conn, case_id=case_id, person=user.name, admin=user.role == "admin", label=label,
                            labels=runtime.deployment.live.labels, note=note)
    except DeciderError as exc:
        flash(request, exc.message, "error")
        return RedirectResponse(f"/review/cases/{case_id}", 303)
    flash(request, f"Case #{case_id} corrected to {label}; the client is told.")
    return RedirectResponse(f"/review/cases/{case_id}", 303)


@router.post("/cases/{case_id}/skip")
def skip(request: Request, runtime: RuntimeDep, user: UserDep, case_id: CaseId, csrf: CsrfField = "") -> Response:
    """Give the case back to the queue and take the next one."""
    check_csrf(request, csrf)
    try:
        with runtime.engine.begin() as conn:
            service.release(conn=conn, case_id=case_id, reviewer=user.name)
    except Conflict as exc:
        flash(request, exc.message, "error")
        return RedirectResponse("/review", 303)
    flash(request, f"Case #{case_id} skipped: you get it again after the other waiting cases.")
    return _on_to_next(request, runtime, user)


def _on_to_next(request: Request, runtime: RuntimeDep, user: Person,
                empty: str = "That was the last case: nothing else is waiting.") -> Response:
    """Straight on to the next case, in the order the reviewer last chose on the queue page."""
    sort = request.session.get("sort", "age")
    with runtime.engine.begin() as conn:
        case = service.claim_next(conn=conn, reviewer=user.name, sort=sort if sort == "confidence" else "age",
                                  lease_seconds=runtime.settings.review.lease_seconds)
    if case is None:
        done = (request.session.get("flash") or {}).get("message")
        flash(request, f"{done} {empty}" if done else empty)
        return RedirectResponse("/review", 303)
    return RedirectResponse(f"/review/cases/{case['id']}", 303)
