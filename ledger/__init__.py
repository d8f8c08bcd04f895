"""The durable record: the SQLite ledger, its schema, and the writer that drains the ledger stream into it.

This package never imports `worker` or `governance`; events cross the boundary as plain dicts of JSON data.
"""
