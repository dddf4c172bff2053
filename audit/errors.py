"""Error types that map to exit codes: InputError -> 2 (unusable input), anything else -> 1."""


class InputError(Exception):
    """The user's input (a path, a file, an argument) cannot be used. Exit status 2."""


class NothingComparable(InputError):
    """Two models share no tensor roles that could be compared."""
