"""Prompt embeddings (``encoders``): TF-IDF + SVD, all-MiniLM-L6-v2 and any sentence-transformers model; encoder
state saved beside a run or a router, and an on-disk cache of a dataset's embeddings.
"""
