"""Generated gRPC code of the cot_transfer.v1 API (`make protos`)."""
