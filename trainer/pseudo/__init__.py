"""Pseudo-label rounds: out-of-fold soft targets for the next cross-validation (label: the sidecar; rounds: the loop)."""
