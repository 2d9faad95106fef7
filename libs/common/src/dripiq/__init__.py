"""Generated protobuf contracts (make protos)."""
