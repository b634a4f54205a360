"""Catalog search: a lexical (BM25) and a semantic (sentence embeddings in Faiss) ranking fused
by reciprocal rank fusion, optionally leaning towards a shopper's taste.

``engine.SearchEngine`` is the one interface the API and the command line use; the index is
built at training time (``build.py``) into the artifact and grown by new catalog items.
"""
