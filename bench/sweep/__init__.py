"""bench/sweep."""
