"""Our own error types, so that every layer can tell "Pitcrew refused" from "Pitcrew broke"."""


class PitcrewError(Exception):
    """Base of every error whose message is meant for a person, not for a stack trace."""
