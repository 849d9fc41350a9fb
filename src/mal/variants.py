"""Fine-tuning variants and the loss weights a config trains with (no torch: ``mal info`` reads it)."""

from __future__ import annotations

VARIANTS = {
    # name: (uses MAL, refresh snapshot each epoch, uses SSL, freeze own encoder)
    "baseline-continued": (False, False, False, False),
    "mal-frozen-fe": (True, False, False, True),
    "mal-frozen": (True, False, False, False),
    "mal-dynamic": (True, True, False, False),
    "wavlm": (False, False, True, False),
    "wavlm-fe": (False, False, True, True),
    "wavlm-mal": (True, False, True, True),
}


def check_variant(name: str | None) -> None:
    """A one-line error for a misspelt ``finetune.variant``."""
    if name is not None and name not in VARIANTS:
        raise ValueError(f"finetune.variant: unknown variant {name!r}; choose from {sorted(VARIANTS)}")


def loss_weights(config: dict) -> dict[str, float]:
    """``{"df", "mal", "ssl"}`` weights: the config's, where a variant that asks for a loss turns it on at 1."""
    variant = config["finetune"]["variant"]
    check_variant(variant)
    use_mal, _, use_ssl, _ = VARIANTS.get(variant, (False,) * 4)
    losses = config["loss"]
    mal = float(losses["mal"]["weight"]) if (use_mal or variant is None) else 0.0
    ssl = float(losses["ssl"]["weight"]) if (use_ssl or variant is None) else 0.0
    if use_mal and mal <= 0:
        mal = 1.0  # the variant asks for MAL: the paper's equal proportion
    if use_ssl and ssl <= 0:
        ssl = 1.0
    return {"df": float(losses["df"]["weight"]), "mal": mal, "ssl": ssl}


def describe_training(config: dict) -> list[str]:
    """What a config trains, in words: the stage and variant, then each loss with its weight."""
    variant = config["finetune"]["variant"]
    weights = loss_weights(config)
    losses = config["loss"]
    if variant is None:
        lines = ["stage 1 (mal train)"]
    else:
        frozen = VARIANTS[variant][3]
        lines = [f"stage 2 (mal finetune --from STAGE1): variant {variant}"
                 + ("; the model's own encoder is frozen" if frozen else "")]
    lines.append(f"L_df (spectral + multi-resolution), weight {weights['df']:g}")
    if weights["mal"] > 0:
        when = "re-taken every epoch" if variant and VARIANTS[variant][1] else "taken once from the stage-1 encoder"
        lines.append(f"L_mal (model as loss, {losses['mal']['stages']}), weight {weights['mal']:g}; MAL-encoder {when}")
    if weights["ssl"] > 0:
        lines.append(f"SSL feature loss ({losses['ssl']['kind']}, layer {losses['ssl']['layer']}), weight {weights['ssl']:g}")
    return lines
