"""Evaluation: feature backbones, metrics (FID, KID, IS, PRDC, intra-FID, FID-inf), extraction, caching.

Importing the package registers every backbone and metric.
"""
from . import backbones  # noqa: F401  (registers backbones)
from . import fid, fid_inf, inception_score, intra_fid, kid, modes, prdc  # noqa: F401  (registers metrics)
from .evaluate import Evaluator, build_backbone, evaluate
from .fid import frechet_distance

__all__ = ["evaluate", "Evaluator", "build_backbone", "frechet_distance"]
