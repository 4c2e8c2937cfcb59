"""Locust load tests of the cot-transfer gRPC API (``python -m loadtests.run --help``)."""
