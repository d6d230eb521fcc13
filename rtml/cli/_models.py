"""``rtml models``: the pretrained models shipped with rtml and what their cards measured."""

from __future__ import annotations

import json

from rtml.model import DEFAULT_PRETRAINED, pretrained_models


def cmd_models(args) -> int:
    """Print each shipped model (name, members, size, training data, measured metrics)."""
    models = pretrained_models()
    if args.json:
        print(json.dumps({m.name: {**m.card, "path": str(m.path), "size_mb": round(m.size_mb, 2)}
                          for m in models}, indent=1))
        return 0
    if not models:
        print("no pretrained models are shipped with this rtml")
        return 0
    for m in models:
        card = m.card
        default = " (default of rtml propagate --engine model)" if m.name == DEFAULT_PRETRAINED else ""
        data = card.get("data", {})
        print(f"{m.name}{default}: {card.get('description', '')}")
        print(f"  path     {m.path}")
        print(f"  members  {len(card.get('hashes', {}).get('members', {})) or 1}, "
              f"{m.size_mb:.1f} MB, sha256 {card.get('hashes', {}).get('model_sha256', '?')[:16]}")
        print(f"  data     {data.get('summary', '?')}")
        for line in card.get("summary", []):
            print(f"  {line}")
    return 0
