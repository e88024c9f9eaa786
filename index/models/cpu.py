"""What this CPU can do, read from /proc/cpuinfo: which int8 and bfloat16 instructions it has
(the document embedder and the int8 export choose by them) and its model name (calibrations
are recorded per CPU)."""

from __future__ import annotations

from functools import cache


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_has_vnni() -> bool:
    """Whether the CPU multiplies int8 with VNNI (AVX512-VNNI, AVX-VNNI or AMX)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bfloat16 support (AMX or AVX512-BF16)."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX bf16 tiles (where bf16 autocast is the fast path)."""
    return "amx_bf16" in cpu_flags()
