"""One module per stage; each has ``async def run(env: BenchEnv) -> dict`` returning
:func:`bench.harness.stage_result`."""

STAGES = (
    "codec",
    "edge_publish",
    "http_ingest",
    "consumer_apply",
    "audit_apply",
    "fleet_apply",
    "masterdata",
    "end_to_end",
    "ceiling",
    "growth",
)
