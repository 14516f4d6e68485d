"""Edge services that run in each store: ingest from tills and devices, outbox, publish."""
