"""decider: put a trained scikit-learn model to work on real decisions, safely."""

__version__ = "0.1.0"
