"""SQL: the ORM models, sessions, migrations, the change log replicas follow, replica
heartbeats, and the PostgreSQL/SQLite differences (dialect.py). Implements index/'s
`ChangeFeed`. May import index/ (its types), encoder/, storage/.
"""
