"""What every serving layer reads: the serving config schema, Serve option checks and the
metric families."""
