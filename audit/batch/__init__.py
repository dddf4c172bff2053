"""Batch audits: a manifest of models, audited in worker processes (or on Ray), cached by file hash.

Modules: `manifest` (YAML/CSV rows, checked before anything runs), `hashcache` (file hashes memoised by
path, size and mtime), `cache` (result cache keyed by content and options), `task` (the work one worker
does for one row), `executors` (local process pool, Ray), `runner` (the batch: outputs and the index).
"""
