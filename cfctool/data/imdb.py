"""IMDB movie reviews (Maas et al. 2011) as token sequences, as in the CfC reference setting.

Reads the official `aclImdb/` tree from `aclImdb_v1.tar.gz`, the text-only
`aclImdb_v1_text.tar.gz`, or an extracted folder. The vocabulary is the `vocab_size` most
frequent training words (ties broken alphabetically), built from the training split
only; id 0 is padding and 1 is out-of-vocabulary. It travels in the checkpoint
(`task.vocab`), so evaluation tokenizes any split exactly as training did. Each review
keeps its last `seq_len` tokens and is padded at the end under a mask.
"""

from __future__ import annotations

import re
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfctool.data.base import Dataset, Split, find_input, sample_indices
from cfctool.data.registry import TEST_SAMPLE_SEED, capped_test_record
from cfctool.errors import CheckpointError, DataError
from cfctool.settings import Setting

if TYPE_CHECKING:  # torch and numpy load inside the functions: `cfctool --help` reads this module's settings
    import torch

PAD, OOV = 0, 1
_LAYOUT = "imdb/aclImdb_v1.tar.gz, imdb/aclImdb_v1_text.tar.gz or an extracted aclImdb/ folder (train/pos, train/neg, test/pos, test/neg)"
_REVIEW = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


# its settings (flags and config keys)
INPUT_KIND = "tokens"  # known before the data are read (import ncps checks --embedding against it)
# the tensors of a split (see xor.TENSORS); no dt: every step is one token
TENSORS = (
    (
        "x",
        ("N", "T"),
        "int64",
        "token ids: 0 padding, 1 out of vocabulary, 2 ... the vocabulary's words, most "
        "frequent first (the vocabulary travels in the checkpoint)",
    ),
    (
        "mask",
        ("N", "T"),
        "bool",
        "the review's tokens, padding after them (none with --padding pre: the pads come first and are read)",
    ),
    ("y", ("N",), "int64", "0 negative, 1 positive"),
)
STEPS = "T = --seq-len (the last tokens of each review)"
SETTINGS = (
    Setting("vocab_size", int, 20000, "imdb: vocabulary (most frequent training words).", low=1),
    Setting("seq_len", int, 200, "imdb: tokens kept per review (the last ones).", low=1),
    Setting(
        "padding",
        str,
        "end",
        "imdb: end (padding after the review, masked) or pre (before it, unmasked: the "
        "pad steps act as a learned initial state, as Keras' pad_sequences).",
        ("end", "pre"),
    ),
)


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:  # not a regular file (links are refused as such)
        raise DataError(f"{member.name}: not a regular file in the IMDB archive")
    return handle.read()


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("<br />", " "))


def find_source(data_dir) -> Path:
    return find_input(data_dir, "imdb", ["aclImdb_v1_text.tar.gz", "aclImdb_v1.tar.gz", "aclImdb"], _LAYOUT)


def read_reviews(source: Path, splits: tuple[str, ...]) -> dict[str, list[tuple[int, int, str]]]:
    """{split: [(label, review id, text)]}, sorted, from an archive or an extracted folder."""
    found: dict[str, list[tuple[int, int, str]]] = {s: [] for s in splits}

    def add(name: str, read) -> None:
        m = _REVIEW.search(name)
        if m and m.group(1) in found:
            found[m.group(1)].append((int(m.group(2) == "pos"), int(m.group(3)), read().decode("utf-8", "replace")))

    try:
        if source.is_dir():
            for path in source.glob("*/*/*.txt"):
                add("aclImdb/" + path.relative_to(source).as_posix(), path.read_bytes)
        else:
            with tarfile.open(source, "r:*") as archive:
                for member in archive:
                    if member.isfile():
                        add(member.name, lambda m=member: _read_member(archive, m))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{source}: cannot read the IMDB archive ({exc}); is it complete? expected {_LAYOUT}") from None
    for split, reviews in found.items():
        if not reviews:
            raise DataError(f"{source}: no {split} reviews found; expected {_LAYOUT}")
        reviews.sort()
    return found


def build_vocab(texts: Iterator[list[str]], size: int) -> list[str]:
    counts: Counter[str] = Counter()
    for tokens in texts:
        counts.update(tokens)
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]]


def vocab_to_tensor(words: list[str]) -> torch.Tensor:
    """The words, newline-separated UTF-8, zlib-compressed (level 9: deterministic bytes;
    a 20,000-word vocabulary takes ~70 KB instead of ~170 KB, which matters once the
    weights are int8)."""
    import zlib

    import torch

    data = zlib.compress("\n".join(words).encode("utf-8"), 9)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


# the longest word a vocabulary may hold, in bytes: bounds what a stored vocabulary may inflate to
MAX_WORD_BYTES = 256


def vocab_from_tensor(t: torch.Tensor, max_words: int | None = None) -> list[str]:
    """The stored vocabulary; with `max_words` (the embedding's rows less the two special
    ids) it is inflated no further than such a vocabulary can be and must hold no more words,
    so a crafted file cannot make it allocate gigabytes."""
    import zlib

    data = t.numpy().tobytes()
    limit = 0 if max_words is None else max_words * (MAX_WORD_BYTES + 1)
    try:
        inflate = zlib.decompressobj()
        text = inflate.decompress(data, limit)
        if inflate.unconsumed_tail:
            raise CheckpointError(
                f"the stored vocabulary inflates beyond {limit:,} bytes, more than {max_words:,} "
                "words can take; the file was altered or written by a faulty tool"
            )
    except zlib.error:  # checkpoints before compression stored the plain text
        text = data
    try:
        words = text.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise CheckpointError(
            "the stored vocabulary is not UTF-8 text; the file was altered or written by a faulty tool"
        ) from None
    if max_words is not None and len(words) > max_words:
        raise CheckpointError(
            f"the stored vocabulary has {len(words):,} words, more than the model's "
            f"{max_words:,}; the file was altered or written by a faulty tool"
        )
    return words


def encode(
    token_lists: list[list[str]], labels: list[int], vocab: list[str], seq_len: int, padding: str = "end"
) -> Split:
    """The last `seq_len` tokens of each review; `end` pads after them under a mask, `pre`
    pads before them without a mask (Keras' pad_sequences: the model reads the pads)."""
    import torch

    index = {w: i + 2 for i, w in enumerate(vocab)}
    x = torch.zeros(len(token_lists), seq_len, dtype=torch.int64)
    mask = torch.zeros(len(token_lists), seq_len, dtype=torch.bool)
    for row, tokens in enumerate(token_lists):
        ids = [index.get(w, OOV) for w in tokens[-seq_len:]] or [OOV]
        if padding == "pre":
            x[row, seq_len - len(ids) :] = torch.tensor(ids)
        else:
            x[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = True
    return Split(x=x, y=torch.tensor(labels, dtype=torch.int64), mask=None if padding == "pre" else mask)


def task_record(vocab_words: int, seq_len: int, padding: str = "end") -> dict[str, Any]:
    return {
        "dataset": "imdb",
        "input": {"kind": "tokens", "vocab_size": vocab_words + 2, "pad_id": PAD, "oov_id": OOV},
        "output": {"kind": "classification", "size": 2, "per_step": False},
        "preprocessing": {
            "tokenizer": "lowercase words [a-z0-9]+('[a-z]+)?, <br /> removed",
            "vocab_words": vocab_words,
            "seq_len": seq_len,
            "keep": "last tokens",
            "padding": "end, masked" if padding == "end" else "pre, unmasked",
            "vocab_from": "train split",
            "labels": {"neg": 0, "pos": 1},
        },
    }


def _subset(reviews: list, limit: int | None) -> list:
    """An even, deterministic subset (every k-th review of the sorted list) for quick runs."""
    if limit is None or limit >= len(reviews):
        return reviews
    step = len(reviews) / limit
    return [reviews[int(i * step)] for i in range(limit)]


def load(cfg) -> Dataset:
    source = find_source(cfg.resolved_data_dir())
    reviews = read_reviews(source, ("train", "test"))
    train = _subset(reviews["train"], cfg.max_samples)
    train_tokens = [tokenize(text) for _, _, text in train]
    vocab = build_vocab(iter(train_tokens), cfg.vocab_size)
    test, subset = reviews["test"], None
    if cfg.max_test_samples is not None and cfg.max_test_samples < len(test):  # tokenize only those read
        keep = sample_indices(len(test), cfg.max_test_samples, TEST_SAMPLE_SEED).tolist()
        test, subset = [test[i] for i in keep], capped_test_record(len(keep), len(test))
    task = task_record(len(vocab), cfg.seq_len, cfg.padding)
    return Dataset(
        task=task,
        splits={
            "train": encode(train_tokens, [r[0] for r in train], vocab, cfg.seq_len, cfg.padding),
            "test": encode([tokenize(t) for _, _, t in test], [r[0] for r in test], vocab, cfg.seq_len, cfg.padding),
        },
        task_tensors={"vocab": vocab_to_tensor(vocab)},
        files=[str(source)] if source.is_file() else [],
        test_subset=subset,
    )


def load_split(task: dict[str, Any], split: str, data_dir, task_tensors) -> Split:
    if split not in ("train", "test"):
        raise DataError(f"IMDB has the splits train and test (got '{split}')")
    if "vocab" not in task_tensors:
        raise DataError("this IMDB checkpoint carries no vocabulary (task.vocab); re-train it with this cfctool")
    vocab = vocab_from_tensor(task_tensors["vocab"], task["input"]["vocab_size"] - 2)
    reviews = read_reviews(find_source(data_dir), (split,))[split]
    padding = "pre" if task["preprocessing"].get("padding", "end").startswith("pre") else "end"
    return encode(
        [tokenize(t) for _, _, t in reviews], [r[0] for r in reviews], vocab, task["preprocessing"]["seq_len"], padding
    )
