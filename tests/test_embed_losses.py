"""Batch-hardest triplet mining on a hand-made batch, keyword and classification losses."""

from __future__ import annotations

import pytest
import torch

from core.embed.losses import batch_hard_triplet, classification_loss, keyword_loss, squared_distances

# unit vectors in the plane; squared distances worked out by hand in the comments
EMB = torch.tensor([
    [1.0, 0.0],    # 0, cat 0
    [0.8, 0.6],    # 1, cat 0
    [0.0, 1.0],    # 2, cat 0
    [0.6, 0.8],    # 3, cat 1
    [-1.0, 0.0],   # 4, cat 1
    [-0.6, -0.8],  # 5, cat 2 (alone: no positive, still a negative for the others)
])
LABELS = torch.tensor([0, 0, 0, 1, 1, 2])


def test_squared_distances():
    d = squared_distances(EMB)
    assert d[0, 1] == pytest.approx(0.4) and d[0, 3] == pytest.approx(0.8) and d[1, 3] == pytest.approx(0.08)
    assert torch.all(d.diagonal() == 0) and torch.allclose(d, d.T)


def test_hardest_positive_and_negative_are_mined():
    r = batch_hard_triplet(EMB, LABELS, margin=0.2)
    # anchor 0: positives d(0,1)=0.4, d(0,2)=2 -> 2; negatives d(0,3)=0.8, d(0,4)=4, d(0,5)=3.2 -> 3
    # anchor 1: positives 0.4, 0.8 -> 2; negatives 0.08, 3.6, 3.92 -> 3
    # anchor 2: positives 2, 0.8 -> 0; negatives 0.4, 2, 3.6 -> 3
    # anchor 3: positive 4 (3.2); negatives 0.8, 0.08, 0.4, 4 -> 1
    # anchor 4: positive 3 (3.2); negatives 4, 3.6, 2, 0.8 -> 5
    assert r.positive.tolist() == [2, 2, 0, 4, 3, -1]
    assert r.negative.tolist() == [3, 3, 3, 1, 5, -1]
    assert r.valid.tolist() == [True] * 5 + [False]
    # hinges [0.2 + d_pos - d_neg]_+ = 1.4, 0.92, 1.8, 3.32, 2.6 -> mean 2.008
    assert float(r.loss) == pytest.approx(2.008, abs=1e-5)
    assert r.d_pos.tolist() == pytest.approx([2.0, 0.8, 2.0, 3.2, 3.2, 0.0], abs=1e-5)


def test_satisfied_triplets_give_zero_loss_and_gradient_flows():
    emb = torch.tensor([[1.0, 0.0], [0.99, 0.141], [-1.0, 0.0], [-0.99, -0.141]], requires_grad=True)
    r = batch_hard_triplet(emb, torch.tensor([0, 0, 1, 1]), margin=0.2)
    assert float(r.loss.detach()) == 0.0
    emb = EMB.clone().requires_grad_(True)
    batch_hard_triplet(emb, LABELS, margin=0.2).loss.backward()
    assert emb.grad[:5].abs().sum() > 0
    assert emb.grad[2].abs().sum() > 0  # a hardest positive of anchors 0 and 1 is pulled in


def test_no_valid_anchor_gives_zero():
    r = batch_hard_triplet(EMB[:3].clone().requires_grad_(True), torch.tensor([0, 1, 2]), margin=0.2)
    assert float(r.loss.detach()) == 0.0 and not r.valid.any()
    r.loss.backward()  # still differentiable
    with pytest.raises(ValueError, match="labels"):
        batch_hard_triplet(EMB, LABELS[:3], margin=0.2)


def test_keyword_and_classification_losses_ignore_padding():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [9.0, -9.0]]])
    labels = torch.tensor([[0, 1, -100]])
    expected = -torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]
    assert float(keyword_loss(logits, labels)) == pytest.approx(float(expected))
    assert float(keyword_loss(logits, torch.full((1, 3), -100))) == 0.0
    cls = classification_loss(torch.tensor([[3.0, 0.0], [0.0, 1.0]]), torch.tensor([0, -100]))
    assert float(cls) == pytest.approx(float(-torch.log_softmax(torch.tensor([3.0, 0.0]), 0)[0]))
