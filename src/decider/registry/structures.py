"""Checks on the trees inside a loaded artifact, before anything predicts with them.

skops rebuilds only trusted types, but a trusted type can still hold bad numbers: scikit-learn's compiled
tree code (`sklearn.tree._tree.Tree`, the boosting `TreePredictor`) follows child and feature indices
without bounds checks, so a crafted file with a child index past the end crashes the process on the first
prediction. `check` walks the loaded estimator and refuses any tree whose indices point outside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_DEPTH = 64  # how deep the walk follows attributes; decider's pipelines are a handful of levels


def _tree_problem(tree: Any) -> str | None:
    count = int(tree.node_count)
    left, right, feature = np.asarray(tree.children_left), np.asarray(tree.children_right), np.asarray(tree.feature)
    if not (len(left) == len(right) == len(feature) == count == len(tree.value)):
        return "a decision tree whose arrays disagree on its node count"
    nodes = np.arange(count)
    leaf = left == -1
    if not np.array_equal(leaf, right == -1):
        return "a decision tree node with one child"
    inner = ~leaf
    if ((left[inner] <= nodes[inner]) | (left[inner] >= count) | (right[inner] <= nodes[inner])
            | (right[inner] >= count)).any():
        return "a decision tree whose child indices point outside it (or back up it)"
    if ((feature[inner] < 0) | (feature[inner] >= int(tree.n_features))).any():
        return "a decision tree splitting on a feature it does not have"
    if not np.isfinite(np.asarray(tree.threshold)[inner]).all():
        return "a decision tree with a threshold that is not a number"
    return None


def _predictor_problem(predictor: Any, n_features: int | None) -> str | None:
    nodes = predictor.nodes
    count = len(nodes)
    inner = ~nodes["is_leaf"].astype(bool)
    left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
    index = np.arange(count)
    if ((left[inner] <= index[inner]) | (left[inner] >= count) | (right[inner] <= index[inner])
            | (right[inner] >= count)).any():
        return "a boosting tree whose child indices point outside it (or back up it)"
    if nodes["is_categorical"].astype(bool).any():
        return "a boosting tree with categorical splits, which decider does not train"
    if n_features is not None and (nodes["feature_idx"][inner].astype(np.int64) >= n_features).any():
        return "a boosting tree splitting on a feature it does not have"
    return None


def check(estimator: Any) -> str | None:
    """The first problem found in any tree the estimator holds, or None."""
    seen: set[int] = set()
    stack: list[tuple[Any, int, int | None]] = [(estimator, 0, None)]
    while stack:
        obj, depth, n_features = stack.pop()
        if id(obj) in seen or depth > MAX_DEPTH or isinstance(obj, (str, bytes, int, float, np.ndarray)):
            continue
        seen.add(id(obj))
        kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
        if kind == "sklearn.tree._tree.Tree":
            problem = _tree_problem(obj)
        elif kind == "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor":
            problem = _predictor_problem(obj, n_features)
        else:
            problem = None
            n_features = getattr(obj, "n_features_in_", n_features)
            children = (obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple))
                        else vars(obj).values() if hasattr(obj, "__dict__") else ())
            stack.extend((child, depth + 1, n_features) for child in children)
        if problem:
            return problem
    return None
