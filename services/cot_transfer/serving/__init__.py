"""Serving: the model servers (data plane), the Ray Serve deployments, and the gRPC edge."""
