"""Inverted dropout with a cheaper random mask on CPU.

    dropout(x)_i = x_i · m_i / (1 - p'),   m_i ~ Bernoulli(1 - p') i.i.d.

``torch.nn.functional.dropout`` draws each mask element with its own ``bernoulli_`` call into
the Mersenne twister, which was the single largest cost of a SASRec training step on this
CPU (~20% of forward + backward, more than the attention matmuls). Here a mask element is 16
random bits: one 64-bit draw of ``random_()`` (63 uniform bits, the sign bit is always 0) gives
three elements, and ``m_i = [u_i >= k]`` with ``u_i`` uniform on 0..65535 and
``k = round(p · 65536)``, so ``p' = k / 65536`` (|p' - p| <= 2^-17; p = 0.4 gives
p' = 0.399994). Measured on one core (loaded machine), a 1M-element mask costs ~15 ms against
~40 ms for ``bernoulli_``. The random bits come from torch's default generator, so
``torch.manual_seed`` and the trainer's saved RNG state make runs reproducible and resumable.

Off CPU, or on a big-endian host, it falls back to ``F.dropout`` (same distribution with p).
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 65536  # 16 bits per mask element
_FAST = sys.byteorder == "little"  # the three low 16-bit words of an int64 are its first three


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device) -> Tensor:
    """bool[shape]: True with probability 1 - round(p · 65536) / 65536, i.i.d. (CPU fast path)."""
    n = 1
    for size in shape:
        n *= int(size)
    words = -(-n // 3)  # three 16-bit elements per 64-bit draw
    bits = torch.empty(words, dtype=torch.int64, device=device).random_()  # [0, 2^63)
    u = bits.view(torch.int16).view(words, 4)[:, :3].reshape(-1)[:n]  # (n,) uniform int16
    threshold = round(p * _LEVELS) - _LEVELS // 2  # int16 scale: u + 32768 >= k
    return (u >= threshold).view(shape)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout of ``x`` with rate ``p`` (see the module docstring for p')."""
    if not training or p == 0.0:
        return x
    if not _FAST or x.device.type != "cpu" or not x.dtype.is_floating_point:
        return F.dropout(x, p, training=True)
    k = round(p * _LEVELS)
    if k >= _LEVELS:
        return torch.zeros_like(x)
    scale = _LEVELS / (_LEVELS - k)
    mask = keep_mask(x.shape, p, x.device).to(x.dtype).mul_(scale)  # (..) 0 or 1 / (1 - p')
    return x * mask


class FastDropout(nn.Module):
    """Drop-in for ``nn.Dropout(p)`` using :func:`dropout` (no parameters, no state)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
