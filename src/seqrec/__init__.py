"""seqrec: sequential recommenders trained with the cross-entropy loss family, evaluated by full ranking."""

__version__ = "0.1.0"
