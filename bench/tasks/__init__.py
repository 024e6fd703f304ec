"""bench/tasks."""
