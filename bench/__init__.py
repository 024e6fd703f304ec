"""Bench: timing, memory, accuracy, reports and the edgebench CLI."""
