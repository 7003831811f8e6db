"""Layers shared by the model families: label-aware norm layers, spectral norm, initialization schemes."""
from .init import INIT_SCHEMES, WEIGHT_LAYERS, init_weights, raw_weight, weight_layers
from .norms import (ConditionalBatchNorm, ConditionalBatchNorm1d, ConditionalBatchNorm2d, IdentityNorm, LabelNorm,
                    UncondBatchNorm1d, UncondBatchNorm2d)
from .spectral_norm import SpectralNorm, has_sn, manual_power_iteration, maybe_sn, power_iterate, top_singular_value

__all__ = [
    "INIT_SCHEMES", "WEIGHT_LAYERS", "init_weights", "raw_weight", "weight_layers",
    "ConditionalBatchNorm", "ConditionalBatchNorm1d", "ConditionalBatchNorm2d", "IdentityNorm", "LabelNorm",
    "UncondBatchNorm1d", "UncondBatchNorm2d",
    "SpectralNorm", "has_sn", "manual_power_iteration", "maybe_sn", "power_iterate", "top_singular_value",
]
