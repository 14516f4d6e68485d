"""tillstream's benchmarks: each stage measured side by side with the best its own building
blocks do on the same machine, in the same run (``make bench``, ``make bench-quick``)."""
