"""``crossfind train-audio`` and ``crossfind eval-audio``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import add_model_arg, config_default, print_json, print_mapping, settings_from
from training.config import TrainConfig


def _default(name: str) -> object:
    return config_default(TrainConfig, name)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-audio", help="train the projected audio encoder on labelled clips")
    p.add_argument("--manifest", action="append", required=True, type=Path, metavar="CSV",
                   help="manifest (path,label,split columns); repeatable; the first one is used in "
                        "full every epoch, later ones are subsampled")
    p.add_argument("--val-split", help="split used for validation (default: a stratified 10%% "
                                        "held out of the training rows)")
    p.add_argument("--epochs", type=int, default=_default("epochs"), help="most epochs (early stopping may end sooner)")
    p.add_argument("--seed", type=int, default=_default("seed"))
    p.add_argument("--val-seed", type=int,
                   help="seed of the held-out validation rows (default: --seed); runs that share it "
                        "are compared on the same clips")
    p.add_argument("--threads", type=int, default=_default("threads"),
                   help="torch CPU threads (1 trained fastest on a loaded 2-core machine)")
    p.add_argument("--init", type=Path, help="continue from this checkpoint (same label vocabulary)")
    p.add_argument("--lr", type=float, default=_default("lr"), help="peak learning rate")
    p.add_argument("--crop-s", type=float, default=_default("crop_s"), help="training crop length in seconds")
    p.add_argument("--per-epoch-clips", type=int, default=_default("per_epoch_clips"),
                   help="clips per epoch from each manifest after the first")
    p.add_argument("--max-gain-db", type=float, default=_default("max_gain_db"),
                   help="normalise each clip's loudness with at most this gain (default: keep "
                        "recorded levels; the first checkpoints used 30)")
    p.add_argument("--no-noise-floor", dest="noise_floor", action="store_false",
                   help="log(mel + 1e-6) as the first checkpoints (default: a noise floor of 4x "
                        "8-bit quantisation noise, so 8-bit and 16-bit recordings look alike)")
    p.add_argument("--digits-from", type=Path,
                   help="reuse this checkpoint's digit expert instead of training one")
    p.add_argument("--select-on-mean", action="store_true",
                   help="early-stop on the mean validation accuracy of all manifests "
                        "(default: the first manifest's)")
    p.add_argument("--combine", action="append", type=Path, metavar="CKPT",
                   help="instead of training, average these checkpoints (trained on the same rows: "
                        "same manifests and --val-seed) into one ensemble; repeatable")
    p.add_argument("--tune-open-set", type=Path, metavar="CKPT",
                   help="instead of training, choose CKPT's open-set abstention power on the "
                        "validation rows it was trained without (same manifests and --val-seed) "
                        "and write CKPT with it to --out")
    p.add_argument("--out", required=True, type=Path, help="checkpoint file to write")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_model_arg(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("eval-audio", help="accuracy and text->audio recall on a labelled split")
    p.add_argument("--manifest", required=True, type=Path, metavar="CSV")
    p.add_argument("--split", required=True, help="split to evaluate, e.g. fold4")
    p.add_argument("--weights", type=Path, help="audio checkpoint (default: the shipped one)")
    p.add_argument("--exclude", action="append", default=[], metavar="COL=VALUE", type=_column_value,
                   help="leave out rows whose COL equals VALUE, e.g. esc50_fold4_same_source=True; "
                        "repeatable")
    p.add_argument("--ablation", action="store_true",
                   help="also report each bridge/projection mix (alpha 0 .. 1)")
    p.add_argument("--absent", action="store_true",
                   help="also report the absent-class measure: each label's query over the split "
                        "without its clips (best absent hit vs true hits; cosine and relevance)")
    p.add_argument("--drop-label", action="append", default=[], metavar="LABEL",
                   help="evaluate as if the checkpoint did not know LABEL (its classifier row and "
                        "prompt removed); with --absent, report how high its clips score for the "
                        "labels they are not; repeatable")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_model_arg(p)
    p.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from training.audio import combine_runs, train_audio

    settings = settings_from(args)
    cfg = TrainConfig(manifests=args.manifest, out=args.out, model=settings.model,
                      cache_dir=settings.cache_dir, epochs=args.epochs, seed=args.seed,
                      val_split=args.val_split, val_seed=args.val_seed, threads=args.threads, init=args.init,
                      lr=args.lr,
                      crop_s=args.crop_s, per_epoch_clips=args.per_epoch_clips,
                      max_gain_db=args.max_gain_db, digits_from=args.digits_from,
                      floor=args.noise_floor,
                      select_on_first=not args.select_on_mean)

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.tune_open_set:
        from search.encoders import create_encoder
        from training.audio_openset import tune_open_set

        encoder = create_encoder(settings.model, settings.cache_dir)
        summary = tune_open_set(cfg, args.tune_open_set, encoder, report)
        if args.json:
            print_json(summary)
        else:
            print(f"wrote {args.out}: confidence power {summary['confidence_power']}")
        return 0
    summary = combine_runs(cfg, args.combine, report) if args.combine else train_audio(cfg, report)
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {args.out}: best validation accuracy {summary['best_val_accuracy']}, "
              f"alpha {summary['alpha']}, {summary.get('train_seconds', 0)} s")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from search.encoders import create_encoder
    from search.encoders.audio import load_audio_head
    from search.errors import ModelUnavailable
    from training.audio_eval import evaluate_manifest

    settings = settings_from(args)
    encoder = create_encoder(settings.model, settings.cache_dir)
    if args.drop_label:
        from search.encoders.audio import AudioModel, read_checkpoint, shipped_weights
        from training.audio_openset import without_labels

        try:
            ckpt = read_checkpoint(args.weights or shipped_weights())
        except ValueError as exc:
            raise ModelUnavailable(str(exc)) from None
        encoder = _with_head(encoder, AudioModel(without_labels(ckpt, args.drop_label), encoder))
    elif args.weights:
        head = load_audio_head(encoder, args.weights)
        if head is None:
            raise ModelUnavailable(f"cannot load audio weights {args.weights} (see the warning above)")
        encoder = _with_head(encoder, head)
    result = evaluate_manifest(encoder, args.manifest, args.split,
                               window_s=settings.audio_window_s, hop_s=settings.audio_hop_s,
                               ablation=args.ablation, exclude=args.exclude, absent=args.absent)
    print_mapping(result, args.json, width=20)
    return 0


def _column_value(text: str) -> tuple[str, str]:
    col, sep, value = text.partition("=")
    if not sep or not col:
        raise argparse.ArgumentTypeError(f"expected COL=VALUE, got {text!r}")
    return col, value


def _with_head(encoder, head):
    """A shallow copy of ``encoder`` that uses ``head`` for audio (the cached one stays as is)."""
    import copy

    clone = copy.copy(encoder)
    clone._audio_head, clone._audio_loaded = head, True
    return clone
