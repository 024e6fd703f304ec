"""Bench: measure/ (timing, memory, sensors, the measured child), report/ (JSON, Markdown, HTML, compare),
sweep/ (planning, child processes, run and sweep), tasks/ (export, predict), and the `edgebench` CLI (commands/)."""
