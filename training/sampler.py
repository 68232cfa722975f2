"""Class-balanced batches (m images per class) that also work under DistributedDataParallel.

pytorch-metric-learning's `MPerClassSampler` has no distributed mode: giving each rank its own
sampler would draw overlapping or unbalanced batches. Here every rank draws the same seeded
*global* batch (world_size x batch_size indices, m per class) and keeps its own contiguous slice of
whole classes, so each rank's batch is still m per class and ranks see disjoint classes per step.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


class MPerClassBatchSampler(Sampler[list[int]]):
    """Yields batches of `batch_size` indices: `batch_size // m` classes, `m` images each.

    A class with fewer than `m` images is sampled with replacement. An epoch is
    `len(targets) // (batch_size * world_size)` steps (at least one), so one epoch shows about
    every image once whatever the world size, unless `steps` says otherwise. Call `set_epoch`
    to reshuffle.
    """

    def __init__(
        self,
        targets: Sequence[int],
        batch_size: int,
        m: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        steps: int | None = None,
    ) -> None:
        if m < 1 or batch_size % m:
            raise ValueError(f"batch_size ({batch_size}) must be a multiple of m ({m})")
        self.by_class: dict[int, list[int]] = defaultdict(list)
        for i, t in enumerate(targets):
            self.by_class[int(t)].append(i)
        self.classes_per_batch = batch_size // m
        if self.classes_per_batch * world_size > len(self.by_class):
            raise ValueError(
                f"{len(self.by_class)} classes cannot fill {world_size} x {self.classes_per_batch} "
                f"distinct classes per step: lower batch_size or raise m"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        self.batch_size, self.m, self.seed = batch_size, m, seed
        self.rank, self.world_size = rank, world_size
        self.steps = steps or max(1, len(targets) // (batch_size * world_size))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def _take(self, rng: random.Random, pools: dict[int, list[int]], c: int) -> list[int]:
        members = self.by_class[c]
        if len(members) < self.m:
            return [rng.choice(members) for _ in range(self.m)]
        # Walk a shuffled pool per class so images recur only after their class is exhausted.
        if len(pools[c]) < self.m:
            refill = members[:]
            rng.shuffle(refill)
            pools[c] = pools[c] + refill
        taken, pools[c] = pools[c][: self.m], pools[c][self.m :]
        return taken

    def __iter__(self) -> Iterator[list[int]]:
        # Same seed on every rank, so all ranks agree on the global batch.
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        classes = sorted(self.by_class)
        pools: dict[int, list[int]] = {c: [] for c in classes}
        per_step = self.classes_per_batch * self.world_size
        order: list[int] = []
        for _ in range(self.steps):
            if len(order) < per_step:
                fresh = classes[:]
                rng.shuffle(fresh)
                # Leftover classes first, then the rest, so no class appears twice in one step.
                order = order + [c for c in fresh if c not in order]
            step_classes, order = order[:per_step], order[per_step:]
            # Draw the whole global batch on every rank (keeps the RNG in step), keep our slice.
            batch = [i for c in step_classes for i in self._take(rng, pools, c)]
            yield batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
