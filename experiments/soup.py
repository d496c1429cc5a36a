"""
soup.py -- MCL's course soups: one model averaged from ELECTRA runs that started alike and took other courses.

    python -m experiments.soup runs/std runs/itd runs/all --out runs/soup            # the uniform soup
    python -m experiments.soup runs/std runs/itd runs/all --out runs/soup --greedy   # the greedy soup

MCL (mcl.py) trains with several courses that pull against each other (the
paper's "tug-of-war") and answers it with course soups: models trained with
different course mixes, averaged. The paper's procedure could not be read;
this command offers the two soups of Wortsman et al. 2022 ("Model soups"):
- uniform: every tensor the mean of all the models' (mcl.average);
- greedy: the models in order of their own dev score, each kept only if the
  soup's score does not drop (mcl.greedy_soup). The dev score here is held-out
  detection F1 under one course mix (--std-ratio, --itd-ratio: all three
  courses by default), on the held-out blocks of the first run's corpus, with
  the fixed masks and noise of train.py's evaluations.

Each model is a train.py checkpoint of --objective electra (a run folder gives
its latest): the discriminator and the generator are averaged alike, so the
soup is one too (discriminator/ and generator/, each a Hugging Face folder)
that finetune.py, train.py --model and this command read. Models of other
shapes (another generator size, another head) are refused, naming the tensor.
The soup's record (provenance.json) names its models by content, which were kept,
and every score.
"""

import argparse
import shutil
from pathlib import Path

import torch

import checkpoint
import data
import electra
import mcl
import runtime
from model import EncoderConfig
from tokenizer import Tokenizer


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Average ELECTRA runs of one start into a course soup (uniform, "
                                             "or greedy by held-out detection F1).",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("models", nargs="+", help="train.py checkpoints or run folders of --objective electra")
    ap.add_argument("--out", required=True, help="the soup's folder (must not exist)")
    ap.add_argument("--greedy", action="store_true",
                    help="the greedy soup: add models best first, keep each only if the soup's score holds")
    share = runtime.number(float, at_least=0, below=1)
    ap.add_argument("--std-ratio", type=share, default=0.15, help="the greedy score's course mix: STD's share")
    ap.add_argument("--itd-ratio", type=share, default=0.15, help="the greedy score's course mix: ITD's share")
    ap.add_argument("--eval-blocks", type=runtime.number(int, at_least=1), default=64,
                    help="held-out blocks the greedy score reads")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    if len(args.models) < 2:
        ap.error("a soup needs at least two models")
    if Path(args.out).exists():
        ap.error(f"{args.out}: exists; a soup is written to a new folder")
    return args


def checkpoint_of(path) -> Path:
    """The ELECTRA checkpoint (discriminator/ and generator/) of a path or run folder, or exit naming it."""
    path = Path(path)
    if (path / "latest").is_file():
        path = checkpoint.latest_checkpoint(path)
    if not all((path / part / "config.json").is_file() for part in electra.ElectraPretraining.parts):
        raise SystemExit(f"error: {path}: not an ELECTRA checkpoint of train.py (discriminator/ and generator/)")
    return path


def heldout_batches(run, tok, n, device):
    """The first n held-out blocks of the run whose checkpoint is `run` (its corpus, block length, held-out
    share and seed, from its record), in batches with the seeds of train.py's evaluations
    (electra.heldout_batches); exits naming the file where they cannot be had."""
    record = checkpoint.read_record(run)
    if record is None:
        raise SystemExit(f"error: {checkpoint.record_path(run)}: no record of the run's corpus, which its "
                         "held-out blocks are read from")
    s = record["settings"]
    positions = EncoderConfig.from_json(run / "discriminator" / "config.json").max_positions
    _, heldout, _ = data.load_corpus(s["corpus"], tok, s["block_length"], positions, s["heldout"],
                                     s.get("cache_dir"), s["seed"], s.get("text_field", "text"))
    if not len(heldout):
        raise SystemExit(f"error: {run}: its run kept no held-out blocks (--heldout 0): nothing to score on")
    return electra.heldout_batches(tok, heldout, n, 16, device)


def greedy_score(args, first, tok, device):
    """The greedy soup's dev score: a function of a state dict, held-out detection F1 under the course mix,
    on the first run's held-out blocks."""
    courses = mcl.Courses(std_ratio=args.std_ratio, itd_ratio=args.itd_ratio)
    model = electra.ElectraPretraining.from_pretrained(first).to(device)
    batches = heldout_batches(first, tok, args.eval_blocks, device)

    def score(state):
        model.load_state_dict(state)
        return mcl.evaluate(courses, model, tok, batches, torch.autocast(device.type, enabled=False))["f1"]
    return score


def main(argv=None):
    args = parse_args(argv)
    device = runtime.setup(args.device, "fp32").device
    folders = [checkpoint_of(m) for m in args.models]
    names = [str(m) for m in args.models]
    pairs = [electra.ElectraPretraining.from_pretrained(f) for f in folders]
    states = [{k: t.to(device) for k, t in p.state_dict().items()} for p in pairs]
    tok = Tokenizer(folders[0] / "discriminator")
    try:
        if args.greedy:
            soup, kept, log = mcl.greedy_soup(states, names, greedy_score(args, folders[0], tok, device))
            for entry in log:
                print(f"{entry['model']}: own F1 {entry['score']:.4f}; the soup with it {entry['soup']:.4f} -> "
                      + ("kept" if entry["kept"] else "left out"))
        else:
            soup, kept, log = mcl.average(states, names), names, []
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    pair = pairs[0]
    pair.load_state_dict(soup)
    out, tmp = Path(args.out), Path(args.out + ".tmp")  # whole, or not there: written aside, then renamed
    shutil.rmtree(tmp, ignore_errors=True)
    pair.save_pretrained(tmp)
    for part in pair.parts:
        tok.save_pretrained(tmp / part)
    settings = {"soup": "greedy" if args.greedy else "uniform", "kept": kept, "log": log}
    if args.greedy:
        settings.update(std_ratio=args.std_ratio, itd_ratio=args.itd_ratio, eval_blocks=args.eval_blocks)
    checkpoint.write_record(tmp, checkpoint.provenance({"models": folders}, settings))
    tmp.rename(out)
    print(f"{settings['soup']} soup of {len(kept)} of {len(names)} models ({', '.join(kept)}): {out}")
    return out


if __name__ == "__main__":
    main()
