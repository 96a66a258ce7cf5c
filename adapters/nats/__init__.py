"""NATS JetStream: the relay (event store -> stream) and projector workers (stream -> views)."""
