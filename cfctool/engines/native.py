"""The C engine: generated C (`c_source`) compiled by the system compiler into a shared
library, loaded with ctypes, run one sequence at a time with the steps timed in C.

Compiled libraries are cached by the hash of their sources, flags and compiler
(`$CFCTOOL_CACHE`, else `$XDG_CACHE_HOME/cfctool`, else `~/.cache/cfctool`), never beside
the checkpoint. Loading a library runs its code, so the cache is private: its directory is
made 0700 and refused when another user owns it or others may write to it; each library is
written atomically with its sha256 beside it, checked before it is loaded; anything else
found at a library's name (truncated, empty, foreign, a directory) is rebuilt.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import nn

from cfctool.engines.c_source import CSource
from cfctool.errors import CfcError

# -ffast-math lets gcc call glibc's vectorised expf (libmvec) for the step's sigmoids, about
# half of a small model's step; the generated code sums in its own order either way (the
# products are axpy loops, vectorised across outputs), and the parity tests run under these
# flags. Sources are compiled (`-c`) with FLAGS and linked with LINK_FLAGS, without
# -ffast-math: linked with it, gcc adds crtfastmath, whose constructor turns on
# flush-to-zero for the whole Python process as soon as the library is loaded.
FLAGS = ("-O3", "-march=native", "-ffast-math", "-std=c99", "-fPIC")
LINK_FLAGS = ("-shared",)


def compiler() -> str:
    """The C compiler: $CC, else cc; a clear error when there is none."""
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(shlex.split(cc)[0])
    if path is None:
        raise CfcError(f"no C compiler found ('{cc}'): install one (e.g. apt-get install gcc) or point $CC at it")
    return cc


def cache_dir() -> Path:
    base = os.environ.get("CFCTOOL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "cfctool"
    )
    return Path(base) / "c"


def private_cache() -> Path:
    """The cache directory, created 0700; refused (CfcError naming it) when it is not a
    directory, belongs to another user, or others may write to it or to its parent."""
    directory = cache_dir()
    hint = "set CFCTOOL_CACHE to a directory of your own"
    try:
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
    except FileExistsError:
        raise CfcError(f"the C engine's cache {directory} is not a directory; {hint}") from None
    except OSError as exc:
        raise CfcError(f"cannot create the C engine's cache {directory}: {exc.strerror or exc}; {hint}") from None
    for path in (directory, directory.parent):
        try:
            info = os.lstat(path)
        except OSError as exc:
            raise CfcError(f"cannot use the C engine's cache {path}: {exc.strerror or exc}; {hint}") from None
        if path == directory and not stat.S_ISDIR(info.st_mode):
            raise CfcError(f"the C engine's cache {directory} is not a directory (a link or a file); {hint}")
        sticky_parent = path != directory and bool(info.st_mode & stat.S_ISVTX)  # /tmp: others cannot replace
        if info.st_uid != os.getuid() and not sticky_parent:
            raise CfcError(
                f"the C engine's cache {path} belongs to another user (uid {info.st_uid}); its "
                f"libraries could run their code as you; {hint}"
            )
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky_parent:
            raise CfcError(
                f"the C engine's cache {path} can be written by other users (mode "
                f"{stat.S_IMODE(info.st_mode):o}); make it private (chmod 700) or {hint}"
            )
    return directory


def harness(src: CSource) -> str:
    """Host-only code around the model: a batch of sequences through NAME_run-like loops, the
    whole loop timed with the monotonic clock (so Python's call costs are not counted)."""
    n, up = src.name, src.name.upper()
    in_t = "int32_t" if src.token_input else "float"
    step_in = "x[t]" if src.token_input else f"x + (int32_t)t * {up}_N_INPUTS"
    return f"""#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <time.h>
#include "{n}.h"

/* items sequences of steps_per_item steps: inputs (items x steps x inputs), dts and mask
   (items x steps, each may be NULL); a masked step keeps the state. Writes the logits
   (items x outputs, or items x steps x outputs per step); returns the seconds taken. */
double {n}_batch(const {in_t} *inputs, const float *dts, const uint8_t *mask, int32_t items,
                 int32_t steps_per_item, float *logits)
{{
    struct timespec t0, t1;
    int32_t i, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < items; ++i) {{
        {n}_state s;
        const {in_t} *x = inputs + (int64_t)i * steps_per_item * {up}_N_INPUTS;
        {n}_reset(&s);
        for (t = 0; t < steps_per_item; ++t) {{
            int64_t at = (int64_t)i * steps_per_item + t;
            if (!mask || mask[at])
                {n}_step(&s, {step_in}, dts ? dts[at] : 1.0f);
            if ({up}_PER_STEP)
                {n}_output(&s, logits + at * {up}_N_OUTPUTS);
        }}
        if (!{up}_PER_STEP)
            {n}_output(&s, logits + (int64_t)i * {up}_N_OUTPUTS);
    }}
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
}}
"""


def _version(cc: str) -> str:
    try:
        return subprocess.run([*shlex.split(cc), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def compile_command(flags: tuple[str, ...] = FLAGS) -> list[str]:
    """The compiler and its flags as run on each source: $CC (else cc), `flags`, then $CFLAGS."""
    return [*shlex.split(compiler()), *flags, *shlex.split(os.environ.get("CFLAGS", ""))]


def _own_file(path: Path) -> bytes | None:
    """The bytes of a regular file of this user's that no one else may write (None for
    anything else at that name: a link, a directory, another user's file)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def _sha256(path: Path) -> str | None:
    data = _own_file(path)
    return None if data is None else hashlib.sha256(data).hexdigest()


def _cached(lib: Path) -> bool:
    """Whether `lib` is a library this user built: a file of ours whose sha256 is the one
    recorded beside it when it was built."""
    expected = _own_file(lib.with_suffix(".sha256"))
    return expected is not None and len(expected) == 64 and _sha256(lib) == expected.decode("ascii", "replace")


def _discard(path: Path) -> None:
    """Remove whatever sits at a cache name (a damaged file, a directory), so it can be rebuilt."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise CfcError(
            f"cannot replace the damaged cache entry {path}: {exc.strerror or exc}; remove it, or set "
            "CFCTOOL_CACHE to another directory"
        ) from None


def build(src: CSource, flags: tuple[str, ...] = FLAGS) -> Path:
    """The shared library of `src` (compiled once per content: cached by hash, checked
    before every load). Compiled in a temp directory inside the cache, so the final rename
    never crosses file systems."""
    cc = compiler()
    command = compile_command(flags)
    link = [*shlex.split(cc), *LINK_FLAGS]
    key = hashlib.sha256(
        "\0".join([src.header, src.source, harness(src), " ".join(command), " ".join(link), _version(cc)]).encode()
    ).hexdigest()[:24]
    directory = private_cache()
    lib = directory / f"{src.name}-{key}.so"
    if _cached(lib):
        return lib
    try:
        tmp_dir = tempfile.mkdtemp(prefix=".build-", dir=directory)
    except OSError as exc:
        raise CfcError(
            f"cannot build in the C engine's cache {directory}: {exc.strerror or exc}; set "
            "CFCTOOL_CACHE to another directory"
        ) from None
    try:
        tmp = Path(tmp_dir)
        (tmp / f"{src.name}.h").write_text(src.header)
        (tmp / f"{src.name}.c").write_text(src.source)
        (tmp / "harness.c").write_text(harness(src))
        objects = []
        for unit in (f"{src.name}.c", "harness.c"):
            obj = tmp / (Path(unit).stem + ".o")
            _run([*command, "-c", "-o", str(obj), str(tmp / unit)], command)
            objects.append(str(obj))
        out = tmp / "lib.so"
        _run([*link, "-o", str(out), *objects, "-lm"], link)
        digest = _sha256(out)
        if digest is None:
            raise CfcError(f"the C compiler wrote no library ({' '.join(command)}); check $CC")
        (tmp / "lib.sha256").write_text(digest)
        os.chmod(out, 0o700)
        for name in (lib, lib.with_suffix(".sha256")):
            if os.path.lexists(name) and (name.is_dir() or name.is_symlink()):
                _discard(name)
        # the library first, then its hash: a reader sees no hash, or one that matches
        os.replace(out, lib)
        os.replace(tmp / "lib.sha256", lib.with_suffix(".sha256"))
    except OSError as exc:
        raise CfcError(
            f"cannot write the compiled library into the C engine's cache {directory}: "
            f"{exc.strerror or exc}; set CFCTOOL_CACHE to another directory"
        ) from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    if not _cached(lib):  # another process replaced it between the rename and here
        raise CfcError(f"the compiled library {lib} changed while it was being cached; run again")
    return lib


def _run(args: list[str], shown: list[str]) -> None:
    try:
        run = subprocess.run(args, capture_output=True, text=True, errors="replace")
    except OSError as exc:
        raise CfcError(f"cannot run the C compiler ({' '.join(shown)}): {exc.strerror or exc}") from None
    if run.returncode != 0:
        raise CfcError(
            f"the C compiler failed on the generated code ({' '.join(shown)}):\n{run.stderr.strip()[-2000:]}"
        )


class CModel(nn.Module):
    """The engine registry's `c` entry: a checkpoint's generated C, compiled for the dt its
    inputs have (the gate folded for dt = 1 when dt is absent or constant 1, read per step
    otherwise), each variant built once."""

    def __init__(self, ckpt, model: nn.Module, integer: dict | None = None, flags: tuple[str, ...] = FLAGS):
        super().__init__()
        from cfctool.engines.c_source import generate, model_name

        self.model = model.eval()
        name = model_name(ckpt)
        self._generate = lambda dt_input: generate(ckpt, self.model, name, dt_input=dt_input, integer=integer)
        self.flags = flags
        self.command = compile_command(flags)  # what compiled it, for the reports
        self._variants: dict[bool, CEngine] = {}
        self.variant(False)  # compile now: a missing compiler or a model without a C form fails here
        self.last_seconds, self.last_steps, self.source = 0.0, 0, self._variants[False].src

    def variant(self, dt_input: bool) -> CEngine:
        if dt_input not in self._variants:
            self._variants[dt_input] = CEngine(self._generate(dt_input), self.flags)
        return self._variants[dt_input]

    def forward(
        self, x: torch.Tensor, dt: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        regular = dt is None or bool((dt == 1).all())
        engine = self.variant(not regular)
        out = engine(x, None if regular else dt, mask)
        self.last_seconds, self.last_steps, self.source = engine.last_seconds, engine.last_steps, engine.src
        return out


class CEngine(nn.Module):
    """Runs a batch through the compiled model, one sequence at a time (batch 1 semantics),
    with the SequenceModel's signature; `last_seconds` and `last_steps` are the C-timed
    seconds and the steps of the latest call."""

    def __init__(self, src: CSource, flags: tuple[str, ...] = FLAGS):
        super().__init__()
        self.src = src
        self.command = compile_command(flags)
        self.lib_path = build(src, flags)
        self.lib = ctypes.CDLL(str(self.lib_path))
        fn = getattr(self.lib, f"{src.name}_batch")
        fn.restype = ctypes.c_double
        fn.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int32,
            ctypes.c_int32,
            ctypes.c_void_p,
        ]
        self._batch = fn
        self.last_seconds = 0.0
        self.last_steps = 0

    @torch.inference_mode()
    def forward(
        self, x: torch.Tensor, dt: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        src = self.src
        items, steps = x.shape[0], x.shape[1]
        x = (x.to(torch.int32) if src.token_input else x.to(torch.float32)).contiguous()
        dts = None if (dt is None or not src.dt_input) else dt.to(torch.float32).contiguous()
        m = None if mask is None else mask.to(torch.uint8).contiguous()
        shape = (items, steps, src.n_outputs) if src.per_step else (items, src.n_outputs)
        logits = torch.empty(shape, dtype=torch.float32)
        ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
        self.last_seconds = self._batch(ptr(x), ptr(dts), ptr(m), items, steps, logits.data_ptr())
        self.last_steps = int(m.sum()) if m is not None else items * steps
        return logits
