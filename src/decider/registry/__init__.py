"""Model versions on disk: training, model cards, and loading artifacts that pass decider's checks."""
