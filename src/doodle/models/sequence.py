"""Stroke-sequence networks, registered beside the timm models (`model.name: seq_gru | seq_transformer`).

Input: `seq` (B, L, F) from `sequence.encode_sequences` and `seq_len` (B,) >= 1. Both models start with
a stack of masked 1D convolutions that read local pen movement, then read the whole drawing's order (a
bidirectional GRU, or a pre-norm transformer encoder with a key padding mask), and end with masked mean +
max pooling and a linear classifier.

Padding never reaches a valid step: padded steps are zeroed before every convolution (so the last valid
steps see the zeros a lone drawing's own conv padding would give), normalisation is per step (LayerNorm,
not BatchNorm, whose batch statistics would include padding), each GRU direction only reads padding after
a sequence's valid steps (see `BiGRU`), and attention masks the padded keys. A drawing therefore gets the
same logits alone or beside a much longer one (eval mode).
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from doodle.config import Config
from doodle.errors import UserError
from doodle.models.registry import register_model
from doodle.render.sequence import N_FEATURES


def length_mask(seq_len: torch.Tensor, length: int) -> torch.Tensor:
    """(B, L) bool: True at the valid steps."""
    return torch.arange(length, device=seq_len.device)[None, :] < seq_len[:, None]


def masked_pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, C), (B, L) -> (B, 2C): mean and max over the valid steps only."""
    m = mask.unsqueeze(-1)
    mean = (x * m.to(x.dtype)).sum(1) / m.sum(1).clamp(min=1).to(x.dtype)
    mx = x.masked_fill(~m, float("-inf")).max(1).values
    return torch.cat([mean, mx], dim=1)


class MaskedConvBlock(nn.Module):
    """Conv1d -> LayerNorm -> GELU, residual when the width is kept; padded steps zeroed before and after."""

    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(c_out)
        self.act = nn.GELU()
        self.residual = c_in == c_out

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, C_in), mask (B, L, 1) in x's dtype -> (B, L, C_out), zero at padded steps."""
        y = self.conv((x * mask).transpose(1, 2)).transpose(1, 2)
        y = self.act(self.norm(y))
        return (x + y if self.residual else y) * mask


class ConvStem(nn.Module):
    """One masked conv block per kernel size: n_features -> width, then width -> width (residual)."""

    def __init__(self, n_features: int, width: int, kernels: tuple[int, ...]):
        super().__init__()
        chans = [n_features] + [width] * len(kernels)
        self.blocks = nn.ModuleList(MaskedConvBlock(a, b, k)
                                    for a, b, k in zip(chans[:-1], chans[1:], kernels, strict=True))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)
        for block in self.blocks:
            x = block(x, m)
        return x


def reverse_valid(x: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's first seq_len steps in place of them; padded steps stay where they are."""
    t = torch.arange(x.shape[1], device=x.device)[None, :]
    idx = torch.where(t < seq_len[:, None], seq_len[:, None] - 1 - t, t)
    return x.gather(1, idx[..., None].expand_as(x))


class BiGRU(nn.Module):
    """Multi-layer bidirectional GRU over a padded batch, exact on every sequence's valid steps.

    Equal to `nn.GRU(bidirectional=True)` over packed sequences, but runs on the padded batch: the forward
    direction is causal, so padding (always after the valid steps) never reaches a valid step; the backward
    direction is a forward GRU over each sequence reversed within its own length, which keeps the padding
    after the valid steps too. Training runs on the padded batch: packed sequences take a per-step autograd
    path on CPU that trains ~3-5x slower than the fused (oneDNN) kernel used for padded input, and on a GPU
    both run the same number of steps. Without autograd the sequences are packed, which skips the padded
    steps (the fused kernel then handles packing too: ~2x faster inference on CPU).
    """

    def __init__(self, c_in: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        sizes = [c_in] + [2 * hidden] * (layers - 1)
        self.fwd = nn.ModuleList(nn.GRU(c, hidden, batch_first=True) for c in sizes)
        self.bwd = nn.ModuleList(nn.GRU(c, hidden, batch_first=True) for c in sizes)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (B, L, 2 * hidden); steps at or after seq_len hold values nobody should read."""
        for i, (fwd, bwd) in enumerate(zip(self.fwd, self.bwd, strict=True)):
            if x.is_cuda:  # copies (EMA, DDP broadcast) may leave cuDNN weights non-contiguous
                fwd.flatten_parameters()
                bwd.flatten_parameters()
            x = self.drop(x) if i else x
            back = reverse_valid(run_gru(bwd, reverse_valid(x, seq_len), seq_len), seq_len)
            x = torch.cat([run_gru(fwd, x, seq_len), back], dim=-1)
        return x


def run_gru(gru: nn.GRU, x: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
    """A one-direction GRU's outputs (B, L, H): padded batch under autograd, packed sequences without it."""
    if torch.is_grad_enabled():
        return gru(x)[0]
    packed = pack_padded_sequence(x, seq_len.cpu(), batch_first=True, enforce_sorted=False)
    return pad_packed_sequence(gru(packed)[0], batch_first=True, total_length=x.shape[1])[0]


class SeqGRU(nn.Module):
    """Masked conv stem + bidirectional GRU + masked mean/max pooling."""

    input_kind = "sequence"

    def __init__(self, n_features: int, n_classes: int, conv: int = 96, hidden: int = 128, layers: int = 2,
                 dropout: float = 0.2, kernels: tuple[int, ...] = (5, 5, 3)):
        super().__init__()
        self.stem = ConvStem(n_features, conv, tuple(kernels))
        self.rnn = BiGRU(conv, hidden, layers, dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * hidden, n_classes))

    def forward(self, seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        mask = length_mask(seq_len, seq.shape[1])
        x = self.stem(seq, mask)
        # The GRU runs in float32 even under autocast: cuDNN's autocast RNN path is fp16-only and a
        # bf16 GRU is not supported everywhere; the convs and the head still run in low precision.
        with torch.autocast(x.device.type, enabled=False):
            out = self.rnn(x.float(), seq_len.clamp(1, seq.shape[1]))
        return self.head(masked_pool(out, mask))


def sinusoid(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """(L, dim) fixed sine/cosine position codes (no maximum length to outgrow)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


class SeqTransformer(nn.Module):
    """Masked conv stem + point-index position codes + pre-norm transformer encoder + masked pooling."""

    input_kind = "sequence"

    def __init__(self, n_features: int, n_classes: int, dim: int = 128, layers: int = 4, heads: int = 4,
                 ff_mult: int = 2, dropout: float = 0.1, kernels: tuple[int, ...] = (5, 3)):
        super().__init__()
        if dim % heads or dim % 2:
            raise UserError(f"model.kwargs: dim {dim} must be even and divisible by heads {heads}")
        self.dim = dim
        self.stem = ConvStem(n_features, dim, tuple(kernels))
        layer = nn.TransformerEncoderLayer(dim, heads, ff_mult * dim, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * dim, n_classes))

    def forward(self, seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        mask = length_mask(seq_len, seq.shape[1])
        x = self.stem(seq, mask) + sinusoid(seq.shape[1], self.dim, seq.device)
        x = self.encoder(x, src_key_padding_mask=~mask)
        return self.head(masked_pool(x, mask))


def _build(cls: type[nn.Module], cfg: Config, n_classes: int) -> nn.Module:
    """`cls` with n_features from `seq.time` and `model.kwargs`, checked against its signature."""
    allowed = sorted(set(inspect.signature(cls).parameters) - {"n_features", "n_classes"})
    bad = sorted(set(cfg.model.kwargs) - set(allowed))
    if bad:
        raise UserError(f"model.kwargs: unknown key(s) {bad} for {cfg.model.name} (valid: {allowed})")
    return cls(N_FEATURES + (1 if cfg.seq.time else 0), n_classes, **cfg.model.kwargs)


@register_model(input_kind="sequence")
def seq_gru(cfg: Config, n_classes: int, in_chans: int) -> nn.Module:
    """Bidirectional GRU over the stroke sequence (a conv stem first)."""
    return _build(SeqGRU, cfg, n_classes)


@register_model(input_kind="sequence")
def seq_transformer(cfg: Config, n_classes: int, in_chans: int) -> nn.Module:
    """Transformer encoder over the stroke sequence (a conv stem and sinusoid positions first)."""
    return _build(SeqTransformer, cfg, n_classes)
