"""Datasets: built-in sets (2D mixtures, digits, stacked digits, CIFAR), image folders and packed files.

Importing this package registers every dataset in `ganforge.registries.DATASETS`.
"""
from . import cifar, digits, folder, mixture2d, pack, stacked_digits  # noqa: F401  (registration)
from .base import DataInfo, Dataset, ImageModality, PointModality, TensorDataset
from .digits_classifier import DigitsClassifier, load_digits_classifier, to_classifier_input
from .pack import pack_source, read_packed, write_packed

__all__ = ["DataInfo", "Dataset", "ImageModality", "PointModality", "TensorDataset", "DigitsClassifier",
           "load_digits_classifier", "to_classifier_input", "pack_source", "read_packed", "write_packed"]
