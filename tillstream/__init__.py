"""tillstream: store tills and devices to head office over Kafka, in seconds, losing nothing."""

__version__ = "0.1.0"
