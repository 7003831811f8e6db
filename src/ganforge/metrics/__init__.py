"""Evaluation: feature backbones, metrics (FID, KID, IS, PRDC, intra-FID, FID-inf), extraction, caching.

Each metric and backbone is one module here; `ganforge.registries.load_all()` finds and imports them.
"""
from .evaluate import Evaluator, build_backbone, evaluate
from .fid import frechet_distance

__all__ = ["evaluate", "Evaluator", "build_backbone", "frechet_distance"]
