"""Fine-tuning variants and the loss weights a config trains with (no torch: ``mal info`` reads it)."""

from __future__ import annotations

VARIANTS = {
    # name: (uses MAL, refresh snapshot each epoch, external feature loss, freeze own encoder);
    # the external loss is read from loss.ext ("ext") or, for the wavlm names, loss.ssl ("ssl")
    "baseline-continued": (False, False, None, False),
    "mal-frozen-fe": (True, False, None, True),
    "mal-frozen": (True, False, None, False),
    "mal-dynamic": (True, True, None, False),
    "ext": (False, False, "ext", False),
    "ext-fe": (False, False, "ext", True),
    "ext-mal": (True, False, "ext", True),
    "wavlm": (False, False, "ssl", False),  # = ext / ext-fe / ext-mal with loss.ssl's WavLM
    "wavlm-fe": (False, False, "ssl", True),
    "wavlm-mal": (True, False, "ssl", True),
}


def check_variant(name: str | None) -> None:
    """A one-line error for a misspelt ``finetune.variant``."""
    if name is not None and name not in VARIANTS:
        raise ValueError(f"finetune.variant: unknown variant {name!r}; choose from {sorted(VARIANTS)}")


def loss_weights(config: dict) -> dict[str, float]:
    """``{"df", "mal", "ssl", "ext"}`` weights: the config's, where a variant that asks for a loss turns it on at 1."""
    variant = config["finetune"]["variant"]
    check_variant(variant)
    use_mal, _, external, _ = VARIANTS.get(variant, (False, False, None, False))
    losses = config["loss"]
    weights = {"df": float(losses["df"]["weight"])}
    for name, used in (("mal", use_mal), ("ssl", external == "ssl"), ("ext", external == "ext")):
        weight = float(losses[name]["weight"]) if (used or variant is None) else 0.0
        weights[name] = 1.0 if used and weight <= 0 else weight  # asked for: the paper's equal proportion
    return weights


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
    if weights["ext"] > 0:
        ext = losses["ext"]
        where = f", {ext['path']}" if ext["path"] else ""
        layer = ext["layer"] if ext["layer"] is not None else "default"
        lines.append(f"external feature loss ({ext['kind']}{where}, layer {layer}), frozen, weight {weights['ext']:g}")
    return lines
