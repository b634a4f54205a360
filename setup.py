"""The C extensions; everything else about the build is in pyproject.toml.

The per-request loops of explanations, diversity and filtered retrieval
(src/recsys_lite/ranking/_reasons.c, ranking/_mmr.c, models/_topk.c). They are optional: without
a C compiler the install goes on, and explain.py, diversity.py and retrieval.py answer with
their numpy versions of the same work. (pyproject.toml's own table for extensions is still
experimental in setuptools, so they are declared here.)
"""

from setuptools import Extension, setup

HEADER = "src/recsys_lite/_arrays.h"


def extension(name: str, source: str) -> Extension:
    return Extension(name, [source], depends=[HEADER], extra_compile_args=["-O3"], optional=True)


setup(
    ext_modules=[
        extension("recsys_lite.ranking._reasons", "src/recsys_lite/ranking/_reasons.c"),
        extension("recsys_lite.ranking._mmr", "src/recsys_lite/ranking/_mmr.c"),
        extension("recsys_lite.models._topk", "src/recsys_lite/models/_topk.c"),
    ]
)
