"""The trainers' subcommands take their defaults from the training configs (written once)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from cli import build_parser
from cli.common import config_kwargs
from search.settings import get_settings
from training.config import AttentionConfig, ProjectionConfig, TrainConfig


def test_train_commands_default_to_the_training_configs():
    parser = build_parser()
    args = parser.parse_args(["train-image-projection", "--out", "p.npz"])
    assert asdict(ProjectionConfig(**config_kwargs(args, ProjectionConfig))) == asdict(ProjectionConfig(Path("p.npz")))
    assert ProjectionConfig(Path("p.npz")).data == get_settings().shared_data

    args = parser.parse_args(["train-attention", "--out", "a.npz", "--epochs", "3", "--no-extra"])
    cfg = AttentionConfig(**config_kwargs(args, AttentionConfig))
    assert (cfg.epochs, cfg.extra, cfg.seeds) == (3, False, AttentionConfig.seeds)

    args = parser.parse_args(["train-audio", "--manifest", "m.csv", "--out", "a.pt"])
    assert (args.epochs, args.lr, args.crop_s, args.per_epoch_clips) == (
        TrainConfig.epochs, TrainConfig.lr, TrainConfig.crop_s, TrainConfig.per_epoch_clips)


def test_projection_training_takes_phrase_and_hierarchy_grids():
    args = build_parser().parse_args(["train-image-projection", "--out", "p.npz", "--phrase-share", "0", "0.3",
                                      "--hierarchy-weight", "0.5"])
    cfg = ProjectionConfig(**config_kwargs(args, ProjectionConfig))
    assert (cfg.phrase_share, cfg.hierarchy_weight) == ([0.0, 0.3], [0.5])
    assert ProjectionConfig(Path("p.npz")).phrase_share == [0.0]  # what the shipped file used


def test_train_calibration_command_takes_its_options():
    args = build_parser().parse_args(["train-calibration", "--out", "r.json", "--seed", "3"])
    assert args.out.name == "r.json" and args.seed == 3 and args.model == "bundled"
    assert args.func.__name__ == "run_calibration"
