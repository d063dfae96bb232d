"""Data: readers, preprocessing, the CSR sequence store, splits, batching, named datasets."""
