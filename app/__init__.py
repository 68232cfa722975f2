"""RetailKLIP: product recognition by nearest-neighbour search over a finetuned encoder.

The packages are layers (docs/ARCHITECTURE.md); each imports only those below it, which
`lint-imports` checks (pyproject.toml [tool.importlinter]):

    cli -> main -> api -> services -> recognition -> runtime | catalogue -> settings -> db
        -> index -> encoder -> storage -> strict_json

`main` is the composition root: it builds every object once, in the lifespan.
"""
