"""The one exception of the checkpoint room."""

__all__ = ["CheckpointError"]


class CheckpointError(Exception):
    """A checkpoint or asset problem the user can fix; the message is one line meant to be printed as is."""

