"""Evaluation: metrics (:mod:`~mal.evaluation.metrics`), the self-consistency test, peer systems."""
