"""Hostile-input fuzz suite (issue 18): crafted and mutated files through the readers and the CLI."""
