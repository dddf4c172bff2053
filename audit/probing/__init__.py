"""Black-box probes: suites as data, backends that answer them, detectors that read the answers, flags.

Nothing heavy is imported here; torch and transformers load only inside the transformers backend.
"""
