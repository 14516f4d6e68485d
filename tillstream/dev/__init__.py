"""Developer machinery: a local Kafka broker and PostgreSQL, sample events.

The command line's ``dev`` and ``demo`` commands, the tests, benchmarks and chaos use it;
no production service imports it (docs/architecture.md)."""
