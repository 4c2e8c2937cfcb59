"""The data plane: the transfer fan-out, adaptive rounds, admission and the per-receiver analysis.
Domain types in, domain types out: no grpc, no protobuf."""
