"""The small library generated services import: data access, queries, errors, app wiring.

Generated code stays thin and readable; behaviour that must be right everywhere lives here,
tested once against SQLite, PostgreSQL and MariaDB.
"""
