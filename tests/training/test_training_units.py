"""Unit tests of the training package: LR-decay groups, sampler balance, ArcFace, kNN metrics."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app.encoder.backbones import TowerConfig, build_tower, load_offline_backbone
from training.arcface import init_centres, make_arcface
from training.evaluate import knn_metrics, leave_one_out_top1
from training.lr_decay import layer_decay_groups
from training.sampler import MPerClassBatchSampler
from training.schedule import warmup_cosine


def _check_groups(tower: torch.nn.Module, lr: float, decay: float, expected_depths: int) -> None:
    groups = layer_decay_groups(tower, lr, decay, weight_decay=0.05)
    ids = [id(p) for g in groups for p in g["params"]]
    params = [p for p in tower.parameters() if p.requires_grad]
    # Every trainable parameter in exactly one group.
    assert len(ids) == len(set(ids)) == len(params)
    assert set(ids) == {id(p) for p in params}
    by_depth = {g["depth"]: g["lr"] for g in groups}
    depths = sorted(by_depth)
    assert depths == list(range(expected_depths))
    rates = [by_depth[d] for d in depths]
    # Strictly decreasing with depth from the head: deeper (closer to input) learns slower.
    assert all(a < b for a, b in itertools.pairwise(rates))
    assert math.isclose(rates[-1], lr)
    assert math.isclose(rates[0], lr * decay ** (expected_depths - 1))
    for g in groups:
        no_wd = all(p.ndim <= 1 for p in g["params"])
        assert (g["weight_decay"] == 0.0) == no_wd or g["name"].endswith("no_wd")


def test_lr_decay_groups_vit() -> None:
    tower = build_tower(
        TowerConfig(32, {"image_size": 32, "layers": 3, "width": 64, "patch_size": 8})
    )
    _check_groups(tower, 1e-3, 0.7, expected_depths=5)  # stem, 3 resblocks, head
    groups = layer_decay_groups(tower, 1e-3, 0.7, 0.05)
    names = {id(p): n for n, p in tower.named_parameters()}
    depth_of = {names[id(p)]: g["depth"] for g in groups for p in g["params"]}
    assert depth_of["conv1.weight"] == depth_of["positional_embedding"] == 0
    assert depth_of["transformer.resblocks.0.attn.in_proj_weight"] == 1
    assert depth_of["transformer.resblocks.2.mlp.c_fc.weight"] == 3
    assert depth_of["ln_post.weight"] == depth_of["proj"] == 4


def test_lr_decay_groups_efficientnet() -> None:
    tower, _ = load_offline_backbone(64)
    _check_groups(tower, 2e-4, 0.8, expected_depths=9)  # stem, 7 stages, head
    groups = layer_decay_groups(tower, 2e-4, 0.8, 0.05)
    names = {id(p): n for n, p in tower.named_parameters()}
    depth_of = {names[id(p)]: g["depth"] for g in groups for p in g["params"]}
    assert depth_of["trunk.conv_stem.weight"] == 0
    assert depth_of["trunk.blocks.3.0.conv_pw.weight"] == 4
    assert depth_of["trunk.conv_head.weight"] == depth_of["trunk.bn2.bias"] == 8


def _targets(per_class: list[int]) -> list[int]:
    return [c for c, n in enumerate(per_class) for _ in range(n)]


def test_sampler_class_balance() -> None:
    targets = _targets([10, 3, 7, 12, 5, 9, 6, 8])  # class 1 has fewer than m images
    sampler = MPerClassBatchSampler(targets, batch_size=8, m=4, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(targets) // 8
    for batch in batches:
        counts = Counter(targets[i] for i in batch)
        assert len(batch) == 8 and sorted(counts.values()) == [4, 4]
    assert list(sampler) == batches  # same seed and epoch: same batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    # Over an epoch every class is visited.
    seen = {targets[i] for b in batches for i in b}
    assert len(seen) >= 6


def test_sampler_distributed_slices_are_balanced_and_disjoint() -> None:
    targets = _targets([6] * 12)
    ranks = [MPerClassBatchSampler(targets, 8, 2, seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(targets) // 16
    for b0, b1 in zip(*ranks, strict=True):
        c0, c1 = Counter(targets[i] for i in b0), Counter(targets[i] for i in b1)
        assert set(c0.values()) == set(c1.values()) == {2} and len(c0) == len(c1) == 4
        assert not set(c0) & set(c1)  # one global batch, split by whole classes
    with pytest.raises(ValueError):
        MPerClassBatchSampler(targets, 6, 4)


def test_arcface_matches_hand_computation() -> None:
    torch.manual_seed(0)
    margin_deg, scale = 20.0, 16.0
    loss = make_arcface(num_classes=3, embed_dim=4, margin_deg=margin_deg, scale=scale)
    emb = F.normalize(torch.randn(5, 4), dim=-1)
    labels = torch.tensor([0, 1, 2, 1, 0])
    got = loss(emb, labels)
    # Hand computation: cos to each normalised centre; target logit cos(theta + m); CE of s*logits.
    w = F.normalize(loss.W.detach(), dim=0)
    m = math.radians(margin_deg)
    total = 0.0
    for e, y in zip(emb.tolist(), labels.tolist(), strict=True):
        cos = [sum(a * b for a, b in zip(e, w[:, c].tolist(), strict=True)) for c in range(3)]
        logits = [scale * c for c in cos]
        logits[y] = scale * math.cos(math.acos(max(-1.0, min(1.0, cos[y]))) + m)
        total += -logits[y] + math.log(sum(math.exp(v) for v in logits))
    assert math.isclose(float(got.detach()), total / 5, rel_tol=1e-4)
    got.backward()
    assert loss.W.grad is not None and loss.W.grad.abs().sum() > 0


def test_init_centres_are_class_means() -> None:
    loss = make_arcface(2, 3, 20.0, 16.0)
    emb = torch.tensor([[1.0, 0, 0], [0.8, 0.6, 0], [0, 0, 2.0]])
    assert init_centres(loss, emb, torch.tensor([0, 0, 1])) == 2
    expected0 = F.normalize(torch.tensor([0.9, 0.3, 0.0]), dim=0)
    assert torch.allclose(loss.W[:, 0], expected0, atol=1e-6)
    assert torch.allclose(loss.W[:, 1], torch.tensor([0.0, 0.0, 1.0]))


def test_knn_metrics_by_hand() -> None:
    gallery = np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32)
    g_labels = ["a", "b", "b"]
    queries = np.array([[0.9, 0.1], [0.7, 0.7], [0.1, 0.9], [1.0, 0.0]], np.float32)
    q_labels = ["a", "a", "b", "b"]
    m = knn_metrics(gallery, g_labels, queries, q_labels, k=5)
    # q0 -> a (right), q1 -> b via [0.6,0.8] (wrong), q2 -> b (right), q3 -> a (wrong).
    assert m.top1 == 0.5 and m.top5 == 1.0
    assert {c.name: c.top1 for c in m.per_class} == {"a": 0.5, "b": 0.5}
    assert m.mean_per_class == 0.5
    points = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.8, 0.2]], np.float32)
    # Only the last point's nearest other point ([1, 0]) has another label.
    assert leave_one_out_top1(points, [0, 0, 1, 1, 1]) == pytest.approx(0.8)


def test_warmup_cosine_schedule() -> None:
    f = warmup_cosine(4, 20)
    assert f(0) == 0.25 and f(3) == 1.0
    values = [f(s) for s in range(4, 21)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert values[-1] == pytest.approx(0.01)


def test_every_train_flag_has_help_text() -> None:
    from training.cli import _train_parser

    parser = _train_parser()
    missing = [a.dest for a in parser._actions if a.dest != "help" and not a.help]
    assert missing == []


def test_logged_learning_rate_is_the_towers_top_rate_not_the_heads() -> None:
    from training.schedule import HEAD_GROUP, get_learning_rate

    tower, head = torch.nn.Linear(4, 4), torch.nn.Parameter(torch.zeros(3, 4))
    groups = layer_decay_groups(tower, 1e-3, 0.5, 0.05)
    groups.append({"params": [head], "lr": 5e-2, "name": HEAD_GROUP})
    optimizer = torch.optim.AdamW(groups)
    assert get_learning_rate(optimizer) == pytest.approx(1e-3)
