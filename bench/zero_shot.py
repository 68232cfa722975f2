"""Zero-shot bench: does finetuning help on products the encoder never saw?

    python -m bench.zero_shot --root ../shared/data/grocery-store

Finetunes the offline EfficientNet-Lite0 on the seen half of the Grocery Store classes (split by
coarse-class parity, see training/zero_shot.py), evaluates frozen vs finetuned on the unseen half
(catalogue-to-shelf and shelf-to-shelf), prints a table, writes results.{json,csv}, per-class CSVs
and a PNG under runs/zero_shot/, and the markdown summary to bench/results/zero_shot.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from app.encoder.checkpoint import read_metadata
from training.plots import plot_per_class
from training.zero_shot import (
    evaluate_unseen,
    finetune_seen,
    markdown_table,
    verdict,
    write_results,
)


def write_markdown(path: str, rows: list, train_seconds: float, cfg: dict) -> None:
    keys = ("epochs", "image_size", "export_sizes", "lr", "layer_decay", "margin", "scale", "seed")
    shown = {k: cfg[k] for k in keys if k in cfg}
    text = f"""# Zero-shot: finetuned on seen classes, evaluated on unseen classes only

Grocery Store data. Split rule (training/zero_shot.py): a fine class is *seen* when its coarse
class id is even (35 classes, 1198 train photos), *unseen* when odd (46 classes), so no coarse
class straddles the split. The offline EfficientNet-Lite0 is finetuned on the seen half's train
photos only; both models are evaluated on the unseen half only. catalogue-to-shelf: gallery = the
46 iconic images, queries = the 1341 test photos; shelf-to-shelf: gallery = the 1442 train
photos, queries = the same 1341 test photos. The frozen backbone is served at 224 px (its
default); the finetuned one at the size its training picked on the seen half's val photos.

Command: `python -m bench.zero_shot --root ../shared/data/grocery-store` (defaults below).
Training config: `{json.dumps(shown)}`; training wall time {train_seconds / 60:.1f} min
on 2 shared CPU cores. Details: `runs/zero_shot/` (results.json/csv, per-class CSVs and PNGs).

{markdown_table(rows)}

{verdict(rows)}
"""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/grocery-store")
    parser.add_argument("--work", default="runs/zero_shot")
    parser.add_argument("--markdown", default="bench/results/zero_shot.md")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--export-sizes", default="160,192,224")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--layer-decay", type=float, default=0.75)
    parser.add_argument("--margin", type=float, default=20.0)
    parser.add_argument("--scale", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-train", action="store_true", help="reuse the finetuned checkpoint")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the markdown from saved results"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    cfg = {
        "epochs": args.epochs,
        "image_size": args.image_size,
        "export_sizes": tuple(int(s) for s in args.export_sizes.split(",")),
        "lr": args.lr,
        "layer_decay": args.layer_decay,
        "margin": args.margin,
        "scale": args.scale,
        "seed": args.seed,
        "threads": args.threads,
    }
    if args.report_only:
        rows = json.loads((work / "results.json").read_text())
        info = read_metadata(work / "finetuned-seen.safetensors")[2]
        write_markdown(args.markdown, rows, info["wall_seconds"], info["config"])
        return 0
    started = time.time()
    checkpoint = work / "finetuned-seen.safetensors"
    if not args.skip_train:
        checkpoint = finetune_seen(args.root, work, cfg)
    train_seconds = time.time() - started
    rows = evaluate_unseen(
        args.root, {"frozen": "efficientnet-lite0", "finetuned": str(checkpoint)}, work
    )
    write_results(rows, work)
    for r in rows:
        plot_per_class(
            list(r["per_class"].items()),
            work / f"per_class_{r['model']}_{r['protocol']}.png",
            f"{r['model']}, {r['protocol']} (unseen classes)",
        )
    print(markdown_table(rows))
    print(verdict(rows))
    write_markdown(args.markdown, rows, train_seconds, cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
