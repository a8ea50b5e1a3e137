"""App factories and the shared, once-per-process live pipeline."""
