"""Head office's master data: item and price files checked, compared with what the compacted
topics hold, and published as the changes (``tillstream items|prices publish``).

- ``csv_file``: reading a master-data CSV file, row problems named by row and column;
- ``cells``: one cell to its value by the project's rules (identifiers, units, money, times);
- ``items_csv``, ``prices_csv``: one file each, to the records of its topic by key;
- ``topic_state``: what a compacted topic holds now, read to its end;
- ``changes``: the file against the topic (new, changed, deleted, unchanged);
- ``publish``: producing the changes and tombstones, every ack awaited.

Imports only ``tillstream.core``; the command line (``tillstream/cli/masterdata.py``) is its
one caller.
"""
