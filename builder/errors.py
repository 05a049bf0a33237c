"""The builder's one error kind: a message that says what is wrong and what to pass instead."""


class BuildError(RuntimeError):
    """A build cannot go on; the CLI prints the message on one line and exits with status 2."""
