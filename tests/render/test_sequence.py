"""Sequence encoding (features, lengths, caps, empty drawings and strokes, time) and the sequence models
(padding never reaches a valid step, every parameter learns, strict kwargs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from doodle.config import Config
from doodle.drawing.flat import Drawings
from doodle.models.factory import build_model, input_kind_of
from doodle.models.registry import REGISTRY
from doodle.models.sequence import BiGRU
from doodle.render.sequence import N_FEATURES, encode_sequences, feature_names, stroke_starts


def points(drawings: list[list[list[tuple]]], timed: bool = False) -> Drawings:
    """Drawings as lists of strokes of (x, y) or (x, y, t) points -> flat Drawings (float coordinates)."""
    xy, t, slen, nst = [], [], [], []
    for strokes in drawings:
        nst.append(len(strokes))
        for s in strokes:
            slen.append(len(s))
            xy += [p[:2] for p in s]
            t += [p[2] if timed else -1 for p in s]
    return Drawings(np.array(xy, np.float32).reshape(-1, 2), np.array(t, np.int32), np.array(slen, np.int32),
                    np.array(nst, np.int32))


def scribble(rng: np.random.Generator, n_strokes: int, per_stroke: int) -> list[list[tuple]]:
    return [[tuple(p) for p in rng.uniform(0, 255, (per_stroke, 2))] for _ in range(n_strokes)]


def test_features_lengths_and_padding_by_hand():
    pts = points([[[(0, 0), (255, 255)], [(255, 0)]], [], [[(127.5, 127.5)]]])
    seq, lengths = encode_sequences(pts, max_points=64, use_time=False)
    assert seq.shape == (3, 3, N_FEATURES) and seq.dtype == np.float32
    assert lengths.tolist() == [3, 1, 1]  # the empty drawing still gets one (all-zero) step
    np.testing.assert_allclose(seq[0], [[-1, -1, 0, 0, 1], [1, 1, 2, 2, 0], [1, -1, 0, -2, 1]])
    assert not seq[1].any()
    np.testing.assert_allclose(seq[2, 0], [0, 0, 0, 0, 1])
    assert not seq[2, 1:].any()  # padding is zero


def test_empty_strokes_do_not_shift_stroke_starts():
    assert stroke_starts(np.array([2, 0, 1, 0]), 3).tolist() == [True, False, True]
    pts = points([[[(0, 0), (10, 0)], [], [(20, 0)], []], [[], []]])
    seq, lengths = encode_sequences(pts, 64, use_time=False)
    assert lengths.tolist() == [3, 1]
    assert seq[0, :, 4].tolist() == [1, 0, 1] and not seq[1].any()


def test_all_empty_batch_and_single_point():
    seq, lengths = encode_sequences(points([[], []]), 8, use_time=True)
    assert seq.shape == (2, 1, N_FEATURES + 1) and lengths.tolist() == [1, 1] and not seq.any()


def test_cap_keeps_every_stroke_start_and_spreads_evenly():
    rng = np.random.default_rng(0)
    long = scribble(rng, 10, 50)  # 500 points, cap 64: 10 starts + 54 evenly spread others
    straight = [[(i * 255 / 999, 0) for i in range(1000)]]
    seq, lengths = encode_sequences(points([long, straight, scribble(rng, 1, 5)]), 64, use_time=False)
    assert seq.shape[1] == 64 and lengths.tolist() == [64, 64, 5]
    starts = seq[0, seq[0, :, 4] == 1, :2]
    expected = (np.array([s[0] for s in long], np.float32) / 127.5) - 1
    np.testing.assert_allclose(starts, expected, atol=1e-6)
    steps = np.diff(seq[1, :, 0])[1:]  # after the kept start, 63 points ~15.9 apart
    assert steps.min() > 0 and steps.max() < 1.1 * steps.min()


def test_more_strokes_than_cap_still_respects_cap():
    rng = np.random.default_rng(1)
    seq, lengths = encode_sequences(points([scribble(rng, 40, 3)]), 16, use_time=False)
    assert lengths.tolist() == [16] and seq[0, :, 4].sum() == 16  # only stroke starts, spread over all 40


def test_dt_feature_timed_untimed_and_mixed():
    strokes = [[(0, 0, 0), (10, 0, 100)], [(20, 0, 600)]]
    timed = points([strokes], timed=True)
    untimed = points([[[p[:2] for p in s] for s in strokes]])
    seq_t, _ = encode_sequences(timed, 64, use_time=True)
    np.testing.assert_allclose(seq_t[0, :, 5], [0, np.log1p(1.0), np.log1p(5.0)], rtol=1e-6)
    seq_u, _ = encode_sequences(untimed, 64, use_time=True)
    assert not seq_u[0, :, 5].any()
    np.testing.assert_array_equal(seq_t[..., :5], seq_u[..., :5])
    assert encode_sequences(timed, 64, use_time=False)[0].shape[-1] == N_FEATURES
    assert feature_names(True)[-1] == "dt" and len(feature_names(False)) == N_FEATURES
    mixed = Drawings.concat([untimed, timed])
    seq_m, _ = encode_sequences(mixed, 64, use_time=True)
    np.testing.assert_array_equal(seq_m[0], seq_u[0])  # no time leaks from the next drawing
    np.testing.assert_array_equal(seq_m[1], seq_t[0])


def test_point_dropout_keeps_stroke_starts_and_needs_rng():
    rng = np.random.default_rng(2)
    pts = points([scribble(rng, 4, 30)])
    seq, lengths = encode_sequences(pts, 200, False, point_dropout=0.5, rng=np.random.default_rng(0))
    assert 4 < lengths[0] < 120 and seq[0, :, 4].sum() == 4
    with pytest.raises(ValueError, match="random generator"):
        encode_sequences(pts, 200, False, point_dropout=0.5)
    with pytest.raises(ValueError, match="max_points"):
        encode_sequences(pts, 0, False)


def seq_config(name: str, **kwargs) -> Config:
    cfg = Config()
    cfg.model.name, cfg.model.kwargs = name, kwargs
    return cfg


SMALL = {"seq_gru": {"conv": 16, "hidden": 16, "layers": 2}, "seq_transformer": {"dim": 16, "layers": 2, "heads": 2}}


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])  # the GRU packs only without autograd
@pytest.mark.parametrize("name", sorted(n for n, f in REGISTRY.items() if f.input_kind == "sequence"))
def test_padding_never_reaches_valid_steps(name, grad):
    """Eval mode: a drawing alone == the same drawing beside a much longer one, whatever fills the padding."""
    torch.manual_seed(0)
    model = build_model(seq_config(name, **SMALL[name]), 5, 3).eval()
    rng = np.random.default_rng(3)
    short, empty = scribble(rng, 2, 4), []
    seq, lengths = encode_sequences(points([short, scribble(rng, 6, 30), empty]), 256, use_time=True)
    x, n = torch.from_numpy(seq), torch.from_numpy(lengths)
    x[0, n[0]:] = torch.randn(x.shape[1] - n[0], x.shape[2]) * 100  # garbage where padding is
    with torch.set_grad_enabled(grad):
        batch = model(x, n)
        alone = model(x[:1, : n[0]], n[:1])
        alone_empty = model(torch.zeros(1, 1, x.shape[2]), torch.ones(1, dtype=torch.int64))
    batch, alone, alone_empty = batch.detach(), alone.detach(), alone_empty.detach()
    assert torch.isfinite(batch).all()
    torch.testing.assert_close(batch[0], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[2], alone_empty[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(n for n, f in REGISTRY.items() if f.input_kind == "sequence"))
def test_every_parameter_gets_a_gradient(name):
    cfg = seq_config(name, **SMALL[name])
    cfg.seq.time = False
    model = build_model(cfg, 4, 3).train()
    assert input_kind_of(cfg) == "sequence" and model.input_kind == "sequence"
    seq, lengths = encode_sequences(points([scribble(np.random.default_rng(4), 3, 7), []]), 64, use_time=False)
    out = model(torch.from_numpy(seq), torch.from_numpy(lengths))
    assert out.shape == (2, 4)
    out.logsumexp(1).sum().backward()
    missing = [k for k, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_bigru_equals_torch_bidirectional_gru_on_packed_sequences():
    torch.manual_seed(0)
    ref = torch.nn.GRU(6, 8, num_layers=2, batch_first=True, bidirectional=True)
    ours = BiGRU(6, 8, layers=2, dropout=0.0)
    for layer in range(2):
        for suffix, gru in (("", ours.fwd[layer]), ("_reverse", ours.bwd[layer])):
            for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(gru, f"{w}_l0").data.copy_(getattr(ref, f"{w}_l{layer}{suffix}"))
    x, lengths = torch.randn(4, 11, 6), torch.tensor([11, 3, 7, 1])
    with torch.no_grad():
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        expected = pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=11)[0]
        got_packed = ours(x, lengths)  # no autograd: packed
    got_padded = ours(x, lengths)  # autograd: padded batch
    valid = torch.arange(11)[None, :] < lengths[:, None]
    for got in (got_packed, got_padded.detach()):
        torch.testing.assert_close(got[valid], expected[valid], atol=1e-5, rtol=1e-5)


def test_unknown_model_kwargs_name_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['hiden'\] for seq_gru.*hidden"):
        build_model(seq_config("seq_gru", hiden=8), 3, 3)
    with pytest.raises(ValueError, match="divisible"):
        build_model(seq_config("seq_transformer", dim=10, heads=4), 3, 3)
