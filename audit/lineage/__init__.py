"""Compare a candidate with references: hidden-unit alignment, layer statistics with nulls, verdict."""
