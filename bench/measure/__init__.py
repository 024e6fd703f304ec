"""bench/measure."""
