"""The edge: protobuf <-> domain (requests in through ``decode``, responses out through ``encode``),
the RPC bodies, the one status table and auth. The only serving layer that speaks the wire."""
