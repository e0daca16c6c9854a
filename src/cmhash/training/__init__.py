"""Training machinery shared by every deep method: the loop, batch sources, checkpoints, DDP."""
