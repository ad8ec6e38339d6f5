"""Where and how a smoke test runs: device, dtype, quantization, memory, and building a model's
skeleton without paying for weights that are about to be replaced."""

from __future__ import annotations

import platform
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from weightprep.errors import InputError

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu" | "cuda"
    dtype: str  # a key of DTYPES
    reason: str  # why this dtype, for the report
    quantize: str  # "none" | "8bit" | "4bit"

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True where the CPU computes bf16 natively (x86 AVX512-BF16 or AMX; Arm BF16)."""
    try:
        flags = set(cpuinfo.read_text(errors="replace").split())
    except OSError:
        flags = set()
    if flags & {"avx512_bf16", "amx_bf16"}:
        return True
    if platform.machine() in ("aarch64", "arm64"):
        return "bf16" in flags or sys.platform == "darwin"
    return False


def choose(device: str, dtype: str, quantize: str, cuda_dtype: str) -> Placement:
    """Resolve `auto` choices. `cuda_dtype` is the model's preferred half precision on GPU."""
    cuda = torch.cuda.is_available()
    if device == "auto":
        device = "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        raise InputError(
            "--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)"
        )
    if quantize != "none":
        if device != "cuda":
            raise InputError(
                f"--quantize {quantize} needs a CUDA GPU (bitsandbytes); on CPU use "
                "--dtype bfloat16 or float32"
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise InputError(f"--quantize {quantize}: pip install bitsandbytes") from exc
    if dtype != "auto":
        return Placement(device, dtype, "as asked", quantize)
    if device == "cuda":
        if cuda_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            return Placement(
                device, "float32", "this GPU has no bfloat16; fp16 can give NaN", quantize
            )
        return Placement(device, cuda_dtype, "the model's usual precision on GPU", quantize)
    if cpu_has_native_bf16():
        return Placement(device, "bfloat16", "this CPU computes bfloat16 natively", quantize)
    return Placement(
        device, "float32", "this CPU has no native bfloat16 (fp16 is slow on CPU)", quantize
    )


def quantization_config(placement: Placement):
    if placement.quantize == "none":
        return None
    from transformers import BitsAndBytesConfig

    if placement.quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=placement.torch_dtype)


def llm_load_kwargs(placement: Placement) -> dict:
    """Keyword arguments for a language model's `from_pretrained`."""
    kw: dict = {"dtype": placement.torch_dtype}
    q = quantization_config(placement)
    if q is not None:
        kw.update(quantization_config=q, device_map={"": 0})
    return kw


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory(device: str) -> tuple[str, int]:
    """('cuda', max allocated bytes) on GPU; ('rss', this process's peak RSS) on CPU."""
    if device == "cuda":
        return "cuda", int(torch.cuda.max_memory_allocated())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return "rss", int(rss if sys.platform == "darwin" else rss * 1024)


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Build modules with their parameters on the meta device and their buffers real.

    Parameters are replaced by the loaded weights right after; buffers that no checkpoint holds
    (position ids, rotary frequencies) are computed by the modules' constructors as usual. Each
    parameter's storage is allocated once, never written, and dropped, so building a 7B skeleton
    costs neither time nor memory.
    """
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None:
            module._parameters[name] = nn.Parameter(
                param.to("meta"), requires_grad=param.requires_grad
            )

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def still_on_meta(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.is_meta] + [
        n for n, b in model.named_buffers() if b.is_meta
    ]
