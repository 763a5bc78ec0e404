"""Training of frame classifiers on frame banks (single process, or data parallel with torch.distributed)."""
