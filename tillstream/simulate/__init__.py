"""A store simulator: tills ringing up realistic baskets, payments, returns and deliveries,
for the live demo and for load tests (``tillstream simulate``)."""
