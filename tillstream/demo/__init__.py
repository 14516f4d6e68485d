"""The live local demo: a broker, an edge per store, the three consumers and simulated tills,
all on this machine (``tillstream demo``, ``make demo``)."""
