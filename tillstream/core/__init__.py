"""The core: the contracts (schemas, topics, rules), the codec, the Kafka factory and settings.

Every service imports it; it imports nothing above it (docs/architecture.md)."""
