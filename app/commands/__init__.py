"""`retailklip` sub-commands other than serve: each module one command (see app/cli.py)."""
