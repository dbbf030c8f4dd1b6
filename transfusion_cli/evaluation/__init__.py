"""Judging a classifier: task scores (AUC, kappa, ...) from logits, numpy + scikit-learn only."""
