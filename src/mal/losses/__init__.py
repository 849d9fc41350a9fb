"""Losses, one ``nn.Module`` per file (auraloss style): L_df, SI-SDR, SSL / external deep features, L_mal."""

from mal.losses.deep_feature import SSLFeatureLoss, wavlm_base_random
from mal.losses.external import DeepFilterNetFeatureLoss, build_external_loss
from mal.losses.frozen import FrozenFeatureLoss
from mal.losses.model_as_loss import ModelAsLoss
from mal.losses.resample import Resample
from mal.losses.spectral import DFLoss, MultiResSpecLoss, SpectralLoss, compress, compressed_spec_mse
from mal.losses.time import SISDRLoss, si_sdr

__all__ = [
    "DFLoss", "DeepFilterNetFeatureLoss", "FrozenFeatureLoss", "ModelAsLoss", "MultiResSpecLoss", "Resample",
    "SISDRLoss", "SSLFeatureLoss", "SpectralLoss", "build_external_loss", "compress", "compressed_spec_mse",
    "si_sdr", "wavlm_base_random",
]
