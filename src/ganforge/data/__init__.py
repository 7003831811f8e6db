"""Datasets: built-in sets (2D mixtures, digits, stacked digits, CIFAR), image folders and packed files.

Each dataset is one module here; `ganforge.registries.load_all()` finds and imports them (registering them in
`ganforge.registries.DATASETS`).
"""
from .base import DataInfo, Dataset, ImageModality, PointModality, TensorDataset
from .digits_classifier import DigitsClassifier, load_digits_classifier, to_classifier_input
from .pack import pack_source, read_packed, write_packed

__all__ = ["DataInfo", "Dataset", "ImageModality", "PointModality", "TensorDataset", "DigitsClassifier",
           "load_digits_classifier", "to_classifier_input", "pack_source", "read_packed", "write_packed"]
