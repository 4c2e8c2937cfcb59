"""Wiring: the Ray Serve deployments and the app builder, autoscaling, routing, the metrics
endpoint and the local start. The only serving layer that imports Ray Serve."""
