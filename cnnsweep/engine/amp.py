"""Mixed precision settings: which autocast dtype, and whether a GradScaler is needed."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class AmpSettings:
    device_type: str  # "cpu" | "cuda"
    dtype: Optional[torch.dtype]  # None = full fp32
    use_scaler: bool  # fp16 only: its 5-bit exponent underflows small gradients without loss scaling

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "off"}[self.dtype]

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def cpu_has_bf16_math() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX512-BF16 in /proc/cpuinfo's flags).

    Without them, CPU autocast emulates bf16 and is several times slower than fp32 (BENCHMARKS.md,
    "Mixed precision on a CPU without bf16 math"). Unknown (no /proc/cpuinfo): False, i.e. fp32.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_amp(amp: str, device: torch.device) -> AmpSettings:
    """`auto` means fp16 + GradScaler on CUDA (fastest on every CUDA GPU); on a CPU, bf16 where the CPU
    has bf16 math (cpu_has_bf16_math), else fp32.

    bf16 keeps fp32's exponent range, so it never needs a scaler; fp16 on CPU is refused because
    CPU autocast kernels for fp16 are slow and offer nothing over bf16.
    """
    kind = device.type
    if amp == "auto":
        amp = "fp16" if kind == "cuda" else ("bf16" if cpu_has_bf16_math() else "off")
    if amp == "off":
        return AmpSettings(kind, None, False)
    if amp == "bf16":
        if kind == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("train.amp: bf16 is not supported on this GPU; use fp16 or auto")
        return AmpSettings(kind, torch.bfloat16, False)
    if kind != "cuda":
        raise ValueError("train.amp: fp16 needs a CUDA device; use bf16 (or auto) on CPU")
    return AmpSettings(kind, torch.float16, True)


def build_scaler(amp: AmpSettings) -> torch.amp.GradScaler:
    # A disabled scaler is a no-op with the same API, so the step code has one path.
    return torch.amp.GradScaler(amp.device_type, enabled=amp.use_scaler)
