"""Head office's decisions for its store estate (issue 24): what a store's edge, tills and
devices should be, checked and published to ``tillstream.estate-desired``.

- ``desired``: one target's change, checked and merged onto what the topic holds;
- ``estate_file``: the estate's TOML file, checked whole;
- ``topic``: what the topic holds now, per store and target, with the last versions;
- ``publishing``: only what changes, each version the one before plus one;
- ``till_tokens``: a till's new token, its hash published, the token shown once.

Imports only ``tillstream.core``: the command line (``tillstream fleet``) and the fleet
service's page (``tillstream_consumers.fleet``) both use it.
"""
