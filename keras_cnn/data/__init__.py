"""Data sources: CIFAR-10 (archive, tensorflow-datasets, image folder), downloads."""
