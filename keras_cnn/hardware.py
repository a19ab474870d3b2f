"""What this host's CPU is: its name, its cores, and whether it has fast int8 instructions.

Timings mean little without the machine they were taken on, and some
targets only mean something on some machines: TFLite's int8 kernels
(XNNPACK) beat float32 where the CPU has int8 dot-product instructions
(x86 AVX512-VNNI, AVX-VNNI or AMX; ARM's dot product, which phones have),
and run about as fast as float32 elsewhere (measured: 1.18x float32 on an
AVX2-only AMD EPYC, 0.36x on an AMX Xeon, for the same file).

Read from /proc/cpuinfo (Linux); elsewhere the answers are "unknown". This
module imports neither TensorFlow nor NumPy.
"""

import os
import platform

from keras_cnn.errors import UserError

# x86 and ARM flags of int8 dot-product instructions, as /proc/cpuinfo spells them, with display names.
INT8_DOT_PRODUCT = {
    "amx_int8": "AMX-INT8",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "asimddp": "ARM dot product",
    "i8mm": "ARM int8 matrix multiply",
}


def _cpuinfo(path="/proc/cpuinfo"):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _field(text, *names):
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in names and value.strip():
            return value.strip()
    return None


def cpu_flags(cpuinfo=None):
    """The instruction-set flags of the first CPU (x86 "flags", ARM "Features"); None if unreadable."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    flags = _field(text, "flags", "Features")
    return None if flags is None else frozenset(flags.split())


def cpu_name(cpuinfo=None):
    """The CPU's model name ("Intel(R) Xeon(R) Processor", "AMD EPYC 7B13 64-Core Processor"), or the machine type."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    return (_field(text, "model name", "Model", "Hardware") or platform.processor() or platform.machine()
            or "unknown CPU")


def usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def int8_dot_product(flags=None):
    """The int8 dot-product instructions among `flags` (default: this CPU's), as display names.

    An empty tuple: none (int8 runs about as fast as float32). None: the
    flags cannot be read here (not Linux).
    """
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return None
    return tuple(name for flag, name in INT8_DOT_PRODUCT.items() if flag in flags)


def describe(cpuinfo=None):
    """One phrase for logs: "Intel(R) Xeon(R) Processor, 2 usable cores, x86_64, int8: AVX512-VNNI"."""
    found = int8_dot_product(cpu_flags(cpuinfo))
    int8 = ("int8 dot product: unknown" if found is None
            else f"int8 dot product: {', '.join(found)}" if found else "no int8 dot-product instructions")
    return f"{cpu_name(cpuinfo)}, {usable_cores()} usable cores, {platform.machine()}, {int8}"


def max_threads():
    """The most threads a thread-count setting may ask for: 256, or the CPU count where that is more.

    More threads than cores only wait for each other, and a count far above
    it (LiteRT given 100,000) crashes the process natively when the
    interpreter is torn down, after the output was written.
    """
    return max(256, os.cpu_count() or 1)


def check_threads(value, what):
    """`value` (None: the library's own choice) if it is at most `max_threads()`, else a one-line `UserError`."""
    if value is not None and value > max_threads():
        raise UserError(f"{what} {value}: more than the {max_threads()} threads this package runs (this machine "
                        f"has {os.cpu_count() or 'an unknown number of'} CPUs; more threads than CPUs only wait "
                        "for each other)")
    return value
