"""Claims vs evidence: what a model declares about its origin and licence, set beside what its weights show."""
