"""Sampling-time methods that use D (DDLS, DRS): each one module here, registered in `SAMPLERS`;
`ganforge.registries.load_all()` finds and imports them. See base.py for the interface."""
from __future__ import annotations

from .base import SampledGenerator, Sampler, bind, build_sampler, parse_sampler

__all__ = ["Sampler", "SampledGenerator", "bind", "build_sampler", "parse_sampler"]
