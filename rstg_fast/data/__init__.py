"""Data for rstg_fast: MNIST digit pools and the SyncMNIST generator, shards and datasets."""

from rstg_fast.data.syncmnist import NUM_CLASSES, SyncMNISTBatch, generate, label_pair, pair_label

__all__ = ["NUM_CLASSES", "SyncMNISTBatch", "generate", "label_pair", "pair_label"]
