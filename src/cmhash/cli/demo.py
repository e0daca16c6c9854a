"""`cmhash demo`: not implemented yet (placeholder so the command list is stable)."""


def register(sub) -> None:
    """Adds no sub-command until the module is implemented."""
