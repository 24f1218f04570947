"""Convex problems with known answers, step-size bounds and convergence certificates."""
