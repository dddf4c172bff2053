"""Fingerprints of a checkpoint: architecture (roles, shapes), tokenizer, weights."""
