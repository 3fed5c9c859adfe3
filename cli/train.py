"""``crossfind train-image-projection`` and ``crossfind train-attention``: the offline trainers of
the bundled encoder's learned parts (``train-audio`` lives in ``cli.audio``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cli.common import config_default, config_kwargs, print_json
from training.config import AttentionConfig, ProjectionConfig


def register(sub: argparse._SubParsersAction) -> None:
    def default(name: str) -> object:
        return config_default(ProjectionConfig, name)

    p = sub.add_parser("train-image-projection",
                       help="train the bundled encoder's image projection (flickr8k train, dev picks)")
    p.add_argument("--out", type=Path, required=True, help="where to write the .npz")
    p.add_argument("--data", type=Path, help="the shared data folder (default: settings.shared_data)")
    p.add_argument("--cache-dir", type=Path,
                   help="backbone and caption caches (default: settings.cache_dir)")
    p.add_argument("--seed", type=int, default=default("seed"))
    p.add_argument("--epochs", type=int, default=default("epochs"))
    p.add_argument("--hidden", type=int, nargs="+", default=default("hidden"),
                   help="hidden width(s) to try; 0 = linear")
    p.add_argument("--temperature", type=float, nargs="+", default=default("temperature"))
    p.add_argument("--lr", type=float, nargs="+", default=default("lr"))
    p.add_argument("--weight-decay", type=float, default=default("weight_decay"))
    p.add_argument("--dropout", type=float, nargs="+", default=default("dropout"))
    p.add_argument("--phrase-share", type=float, nargs="+", default=default("phrase_share"),
                   help="share(s) of photos paired each epoch with a noun phrase of their "
                        "captions instead of a whole caption (0 = captions only)")
    p.add_argument("--hierarchy-weight", type=float, nargs="+", default=default("hierarchy_weight"),
                   help="bridge: pull of each ImageNet class towards its parents (a dog, a pet); "
                        "the best on dev is kept")
    p.add_argument("--sentence-weight", type=float, default=default("sentence_weight"),
                   help="bridge: weight of the top-5 sentence embedding in the mix (it costs "
                        "a MiniLM pass per photo)")
    p.add_argument("--threads", type=int, default=default("threads"),
                   help="torch threads (1 is fastest under load)")
    p.set_defaults(func=run_projection)

    p = sub.add_parser("train-attention",
                       help="train the learned attention fusion on composed flickr8k queries")
    p.add_argument("--out", type=Path, required=True, help="where to write the .npz")
    p.add_argument("--data", type=Path, help="the shared data folder (default: settings.shared_data)")
    p.add_argument("--epochs", type=int, default=config_default(AttentionConfig, "epochs"))
    p.add_argument("--seeds", type=int, default=config_default(AttentionConfig, "seeds"),
                   help="query sets built per training photo")
    p.add_argument("--no-extra", dest="extra", action="store_false",
                   help="flickr8k_1k train only")
    p.set_defaults(func=run_attention)
    register_calibration(sub)


def run_projection(args: argparse.Namespace) -> int:
    from training.image_projection import train_projection  # heavy: torch

    logging.getLogger().setLevel(logging.INFO)
    print_json(train_projection(ProjectionConfig(**config_kwargs(args, ProjectionConfig))))
    return 0


def run_attention(args: argparse.Namespace) -> int:
    from training.attention import train_attention  # heavy: torch

    logging.getLogger().setLevel(logging.INFO)
    print_json(train_attention(AttentionConfig(**config_kwargs(args, AttentionConfig))))
    return 0


def register_calibration(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-calibration",
                       help="fit the shipped relevance calibration on judged training-side data")
    p.add_argument("--out", type=Path, required=True,
                   help="where to write the .json (shipped: search/encoders/weights/"
                        "relevance_calibration.json)")
    p.add_argument("--data", type=Path, help="the shared data folder (default: settings.shared_data)")
    p.add_argument("--cache-dir", type=Path, help="embedding caches (default: settings.cache_dir)")
    p.add_argument("--model", default="bundled", help="the encoder to calibrate")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_calibration)


def run_calibration(args: argparse.Namespace) -> int:
    import torch

    from search.settings import get_settings
    from training.calibration import train_calibration

    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.INFO)
    settings = get_settings()
    print_json(train_calibration(args.out, args.data or settings.shared_data,
                                 args.cache_dir or settings.cache_dir, args.model, args.seed))
    return 0
