"""Mixup / CutMix (doodle.train.mix): soft targets that add up, images that change, the teachers' targets of
distillation mixed in the images' proportion, the loss they feed, the settings that cannot work refused, and a
run that still learns with both on."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_learning import ROOT, train
from timm.loss import SoftTargetCrossEntropy

from doodle.config import ConfigError, load_config
from doodle.errors import UserError
from doodle.train.distill import DistillLoss, distill_loss
from doodle.train.engine import _loss
from doodle.train.mix import build_mix, check_mix_config

CNN = ROOT / "configs" / "r18_boost.yaml"


def test_mixed_batches_have_soft_targets_that_sum_to_one():
    cfg = load_config(CNN, ["augment.mixup=0.4", "augment.cutmix=1.0", "train.label_smoothing=0.1"])
    check_mix_config(cfg, "image")
    mix = build_mix(cfg, 5)
    torch.manual_seed(0)
    np.random.seed(0)  # timm draws the mixing proportion from numpy's global generator
    x, target = torch.rand(8, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    mixed_x, soft, none = mix(x.clone(), target)
    assert none is None  # no teachers given, none returned
    assert soft.shape == (8, 5) and torch.allclose(soft.sum(1), torch.ones(8))
    assert not torch.equal(mixed_x, x)
    off = 0.1 / 5  # label smoothing's share of each class
    assert soft[0, 0] > off and soft[0, 2] > off  # drawing 0 (class 0) and its partner, drawing 7 (class 2)
    odd_x, one_hot, _ = mix(x[:7].clone(), target[:7])  # a DDP shard's odd remainder: left as it is
    assert torch.equal(odd_x, x[:7]) and torch.equal(one_hot.argmax(1), target[:7])
    assert torch.allclose(one_hot.max(1).values, torch.full((7,), 0.9 + 0.1 / 5))


def test_teachers_targets_are_mixed_in_the_images_proportion():
    """Every image i of 8 is the constant i, so a mixup batch's image i reads lam i + (1 - lam)(7 - i): the
    teachers' probabilities must be lam p_i + (1 - lam) p_(7-i), the same lam as the label targets'."""
    cfg = load_config(ROOT / "configs" / "distill.yaml", ["augment.mixup=8", "augment.mix_prob=1.0",  # lam near 0.5
                                                          "train.label_smoothing=0"])
    check_mix_config(cfg, "image")  # distillation and mixing together are accepted
    mix = build_mix(cfg, 5)
    np.random.seed(0)
    x = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 4, 4).contiguous()
    target = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    p = torch.softmax(torch.randn(8, 5, generator=torch.Generator().manual_seed(0)) * 3, 1)
    mixed_x, soft, teacher = mix(x, target, p.log().half())
    lam = 1 - float(mixed_x[0, 0, 0, 0]) / 7  # image 0 reads 7 (1 - lam)
    assert 0.1 < lam < 0.9 and torch.allclose(mixed_x[:, 0, 0, 0], lam * torch.arange(8.0) + (1 - lam) * torch.arange(7.0, -1, -1))
    assert torch.allclose(teacher.exp(), lam * p + (1 - lam) * p.flip(0), atol=2e-3)  # float16 in
    assert torch.allclose(soft[0], lam * F.one_hot(target[0], 5).float() + (1 - lam) * F.one_hot(target[7], 5).float())
    _, _, odd = mix(x[:7].clone(), target[:7], p[:7].log())  # an odd remainder: the teachers' targets as they were
    assert torch.equal(odd, p[:7].log())


def test_mixed_loss_is_cross_entropy_to_the_soft_targets():
    logits, soft = torch.randn(6, 4), torch.softmax(torch.randn(6, 4), 1)
    got = _loss(logits, torch.zeros(6, dtype=torch.long), None, soft)
    assert torch.allclose(got, SoftTargetCrossEntropy()(logits, soft))
    one_hot = F.one_hot(torch.arange(6) % 4, 4).float()
    assert torch.allclose(_loss(logits, torch.arange(6) % 4, None, one_hot), F.cross_entropy(logits, torch.arange(6) % 4))


def test_a_mixed_distillation_batch_mixes_both_terms():
    """With distillation, a mixed batch's loss is (1 - alpha) CE(mixed labels) + alpha T^2 KL(mixed teachers)."""
    g = torch.Generator().manual_seed(0)
    logits, teacher = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g).log_softmax(1)
    mixed = torch.softmax(torch.randn(6, 4, generator=g), 1)
    state = SimpleNamespace(distill=DistillLoss(alpha=0.3, temperature=2.0), label_smoothing=0.1)
    got = _loss(logits, torch.zeros(6, dtype=torch.long), state, mixed, teacher)
    soft_only = distill_loss(logits, torch.zeros(6, dtype=torch.long), teacher, 1.0, 2.0)
    assert torch.allclose(got, 0.7 * SoftTargetCrossEntropy()(logits, mixed) + 0.3 * soft_only)
    unmixed = _loss(logits, torch.zeros(6, dtype=torch.long), state, None, teacher)  # labels, label-smoothed
    assert torch.allclose(unmixed, 0.7 * F.cross_entropy(logits, torch.zeros(6, dtype=torch.long), label_smoothing=0.1)
                          + 0.3 * soft_only)


def test_off_by_default_and_refused_where_it_cannot_work():
    assert build_mix(load_config(CNN), 5) is None
    assert build_mix(load_config(CNN, ["augment.cutmix=1.0", "augment.mix_prob=0.5"]), 5) is not None
    with pytest.raises(UserError, match="augment.mixup / augment.cutmix mix images; model.name 'seq_gru'"):
        check_mix_config(load_config(ROOT / "configs" / "seq_gru.yaml", ["augment.cutmix=1"]), "sequence")
    with pytest.raises(ConfigError, match="augment.mix_prob"):
        load_config(CNN, ["augment.mix_prob=1.5"])


@pytest.mark.slow
def test_demo_recipe_learns_with_mixup_and_cutmix(kaggle_store, tmp_path):
    """test_learning's demo run with both kinds of mixing on every batch. Measured: MAP@3 0.47 (0.54 unmixed; chance
    0.067); bound 0.25."""
    run = train("demo.yaml", kaggle_store, tmp_path, "--set", "data.img_size=32", "train.max_minutes=0",
                "train.epochs=4", "data.per_class=40", "train.batch_size=32", "data.num_workers=0",
                "data.val_per_class=10", "augment.mixup=0.2", "augment.cutmix=1.0")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val/map3"] >= 0.25, summary
