"""Numeric work on one thread: on a machine whose cores are already busy (the server runs one worker per core),
a second BLAS or OpenMP thread only spins and waits. Measured on the 2-core machine under load: a 100,000-row
matrix-vector product 3 ms on one thread against 15 ms on two; a boosting model's 2,000-row predict_proba
hundreds of milliseconds on two threads."""

from __future__ import annotations

from typing import Any

_controller: Any = None


def one_thread(user_api: str | None = None) -> Any:
    """A context manager limiting the numeric libraries (`user_api`: "blas", "openmp" or all) to one thread."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api=user_api)
