"""Device choice (auto: cuda > mps > cpu) and the reason for it, for the app to show."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from core.config import get_settings


@dataclass(frozen=True)
class DeviceInfo:
    name: str  # "cuda", "mps" or "cpu"
    detail: str  # e.g. the GPU name or the CPU thread count
    reason: str
    half: bool  # half precision is safe here (CUDA)


@lru_cache(maxsize=4)
def resolve_device(requested: str | None = None) -> DeviceInfo:
    """Pick the device: ``requested`` (or settings.device); ``auto`` means cuda > mps > cpu."""
    import torch

    want = (requested or get_settings().device).lower()
    has_cuda = torch.cuda.is_available()
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if want == "cuda" and not has_cuda:
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA GPU (set ADLENS_DEVICE=auto or cpu)")
    if want == "mps" and not has_mps:
        raise RuntimeError("device 'mps' was requested but this machine has no Apple GPU (set ADLENS_DEVICE=auto or cpu)")
    if want == "cuda" or (want == "auto" and has_cuda):
        reason = "requested" if want == "cuda" else "auto: a CUDA GPU is available"
        return DeviceInfo("cuda", torch.cuda.get_device_name(0), reason, half=True)
    if want == "mps" or (want == "auto" and has_mps):
        reason = "requested" if want == "mps" else "auto: Apple GPU available, no CUDA"
        return DeviceInfo("mps", "Apple GPU", reason, half=False)
    torch.set_flush_denormal(True)
    reason = "requested" if want == "cpu" else "auto: no CUDA or Apple GPU found"
    return DeviceInfo("cpu", f"{torch.get_num_threads()} threads", reason, half=False)

