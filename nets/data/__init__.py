"""Data in: the IDX reader, dataset lookup and downloads, checksums, batches, augmentation, user images."""
