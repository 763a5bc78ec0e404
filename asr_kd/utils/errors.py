"""The one exception type for bad user input."""


class InputError(ValueError):
    """Bad input from the user (a file, a manifest, an option); the message names what and where.

    CLIs catch it, print one line and exit with status 2.
    """
