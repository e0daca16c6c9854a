"""Experiments: settings and presets resolution, one training run, seed grids and reports."""
