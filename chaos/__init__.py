"""Fault injection with an independent checker: ``make chaos``; see docs/chaos.md."""
