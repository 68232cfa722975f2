"""`retailklip` command line: serve, migrate, reindex, models, drop-model, import, openapi,
gc-blobs, backup, restore, export-onnx, train, eval, render-shelves, train-detector,
eval-detector, export-detector."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.encoder.loading import serving_blocker
    from app.encoder.model_spec import ModelLoadError
    from app.main import create_app
    from app.settings import Settings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = Settings(**overrides)
    try:
        blocker = serving_blocker(settings.model_choice)
    except ModelLoadError as exc:  # a checkpoint path that is not there, say
        blocker = str(exc)
    if blocker is not None:
        print(f"error: {blocker}", file=sys.stderr)
        return 2
    server = settings.server
    uvicorn.run(
        create_app(settings),
        host=server.host,
        port=server.port,
        log_level=server.log_level,
        timeout_graceful_shutdown=10,
        # Connections; requests in flight are ConcurrencyLimitMiddleware's.
        limit_concurrency=settings.limits.max_connections,
        ssl_certfile=server.tls_cert_file,
        ssl_keyfile=server.tls_key_file,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from app.db.migrate import upgrade_to_head
    from app.settings import Settings

    settings = Settings()
    upgrade_to_head(settings.storage.database_url)
    print(f"database at head: {settings.storage.safe_database_url}")
    return 0


def _reindex(args: argparse.Namespace) -> int:
    from app.cli.reindex import run_reindex
    from app.settings import Settings

    return run_reindex(Settings(), batch_size=args.batch_size)


def _models(args: argparse.Namespace) -> int:
    from app.cli.model_admin import run_models
    from app.settings import Settings

    return run_models(Settings(), args.live_s)


def _drop_model(args: argparse.Namespace) -> int:
    from app.cli.model_admin import run_drop_model
    from app.settings import Settings

    return run_drop_model(Settings(), args.model_id, args.live_s, args.force)


def _gc(args: argparse.Namespace) -> int:
    from app.cli.gc_blobs import run_gc
    from app.settings import Settings

    return run_gc(Settings(), args.grace_hours, args.dry_run)


def _openapi(args: argparse.Namespace) -> int:
    import json

    from app.main import create_app
    from app.settings import Settings

    # The document depends on the limits in the settings, and on whether keys are configured
    # (the X-API-Key scheme and its 401s); nothing is loaded to build it.
    settings = Settings(api_keys="configured" if args.with_api_keys else "")  # type: ignore[arg-type]
    print(json.dumps(create_app(settings).openapi(), indent=2, sort_keys=True))
    return 0


def _import(args: argparse.Namespace) -> int:
    from app.cli.importer import run_import

    return run_import(
        args.source,
        args.url,
        args.api_key,
        catalogues=args.catalogue,
        state_path=args.state,
        restart=args.restart,
    )


def _backup_or_restore(args: argparse.Namespace) -> int:
    from app.cli.backup import run_backup, run_restore
    from app.db.sql_backup import BackupError
    from app.settings import Settings

    run = run_backup if args.command == "backup" else run_restore
    try:
        return run(Settings(), args.directory)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _export_onnx(args: argparse.Namespace) -> int:
    from app.cli.export_onnx import run_export
    from app.encoder.model_spec import ModelLoadError
    from app.settings import Settings

    settings = Settings()
    try:
        return run_export(
            args.model or settings.model, args.runtime, args.out or settings.model_choice.onnx_dir
        )
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Training and evaluation own their argument parsing (python -m training works the same).
    training_commands = ("train", "eval", "render-shelves", "train-detector", "eval-detector")
    if argv and argv[0] in (*training_commands, "export-detector"):
        from training.cli import main as training_main

        return training_main(argv)
    parser = argparse.ArgumentParser(prog="retailklip", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(func=_serve)
    migrate = sub.add_parser("migrate", help="alembic upgrade head on RETAILKLIP_DATABASE_URL")
    migrate.set_defaults(func=_migrate)
    reindex = sub.add_parser(
        "reindex", help="embed every reference image with the current model, beside other models"
    )
    reindex.add_argument("--batch-size", type=int, default=32)
    reindex.set_defaults(func=_reindex)
    models = sub.add_parser("models", help="models holding vectors in SQL, and their replicas")
    models.add_argument("--live-s", type=float, default=300.0, help="replica heartbeat window")
    models.set_defaults(func=_models)
    drop = sub.add_parser("drop-model", help="delete a model's vectors once no replica uses it")
    drop.add_argument("model_id", help="as `retailklip models` lists it")
    drop.add_argument("--live-s", type=float, default=300.0, help="replica heartbeat window")
    drop.add_argument("--force", action="store_true", help="even if replicas reported lately")
    drop.set_defaults(func=_drop_model)
    importer = sub.add_parser("import", help="register a catalogue folder or CSV via the HTTP API")
    importer.add_argument(
        "source", type=Path, help="folder per SKU, or CSV with sku,name,path[,metadata,catalogues]"
    )
    importer.add_argument("--url", default="http://127.0.0.1:8000")
    importer.add_argument("--api-key", default=os.environ.get("RETAILKLIP_IMPORT_API_KEY"))
    importer.add_argument(
        "--catalogue", action="append", default=[], help="add every product to it (repeatable)"
    )
    importer.add_argument(
        "--state",
        type=Path,
        default=None,
        help="progress file (default: ~/.cache/retailklip/import-<source+url>.json)",
    )
    importer.add_argument("--restart", action="store_true", help="ignore earlier progress")
    importer.set_defaults(func=_import)
    openapi = sub.add_parser("openapi", help="print the HTTP contract (OpenAPI 3 JSON)")
    openapi.add_argument(
        "--with-api-keys", action="store_true", help="as served when RETAILKLIP_API_KEYS is set"
    )
    openapi.set_defaults(func=_openapi)
    gc = sub.add_parser("gc-blobs", help="delete stored image bytes no reference image uses")
    gc.add_argument("--grace-hours", type=float, default=24.0)
    gc.add_argument("--dry-run", action="store_true")
    gc.set_defaults(func=_gc)
    backup = sub.add_parser(
        "backup", help="consistent copy of SQL, then of the blobs it names, while writers run"
    )
    backup.add_argument("directory", type=Path, help="a new (or empty) directory")
    backup.set_defaults(func=_backup_or_restore)
    restore = sub.add_parser(
        "restore", help="a backup into an empty database and blob directory, then migrate"
    )
    restore.add_argument("directory", type=Path, help="as `retailklip backup` wrote it")
    restore.set_defaults(func=_backup_or_restore)
    export = sub.add_parser(
        "export-onnx", help="write a model's checked ONNX graph (needs the torch extra)"
    )
    export.add_argument("--model", default=None, help="default: RETAILKLIP_MODEL")
    export.add_argument("--runtime", default="onnx", choices=["onnx", "onnx-int8"])
    export.add_argument("--out", type=Path, default=None, help="default: RETAILKLIP_ONNX_DIR")
    export.set_defaults(func=_export_onnx)
    sub.add_parser("train", help="finetune an encoder (see `retailklip train --help`)")
    sub.add_parser("eval", help="nearest-neighbour evaluation (see `retailklip eval --help`)")
    sub.add_parser("render-shelves", help="synthetic shelf photos with boxes for the detector")
    sub.add_parser("train-detector", help="train the product detector on rendered shelves")
    sub.add_parser("eval-detector", help="detector recall, AP50 and speed on boxed shelf photos")
    sub.add_parser("export-detector", help="a detector checkpoint's checked ONNX graph")
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValidationError as exc:  # the settings (their values are never shown: keys)
        problems = "; ".join(
            f"RETAILKLIP_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
            if e["loc"]
            else e["msg"]
            for e in exc.errors()
        )
        print(f"error: invalid settings: {problems}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
