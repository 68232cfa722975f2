"""`python -m app.cli`: the `retailklip` command without the installed entry point."""

from app.cli.main import main

raise SystemExit(main())
