"""The store's estate at its edge (issue 24): what the edge reports of itself, its tills and
devices, and head office's desired state applied (docs/edge.md, "Estate reports", "Till
status", "Head office's desired state").

Modules, each knowing only those above it in this list:

- ``db``: the estate's SQLite file beside the outbox (desired state, what was applied,
  what the tills said of themselves), written in its own thread;
- ``tills``: what the edge knows of each till, and the one rule refusing a suspended one;
- ``access``: who a token is (the tokens file with head office's rotations);
- ``till_status``: ``POST /v1/tills/status`` and the ``X-Till-Software`` header;
- ``desired_copy`` and ``desired_sync``: this store's records of
  ``tillstream.estate-desired``, kept while offline; ``desired_apply``: put in force;
- ``report`` (one report, encoded) and ``reporter`` (when, over a producer of its own);
- ``service``: all of it composed for the edge.
"""
