"""ALS trained by Spark (``pyspark.ml.recommendation.ALS``) into the usual ``als`` artifact.

The interaction matrix is the embedded trainer's (data/interactions.py: the same weighting,
the same user and item id maps), exported as Parquet with the id maps' integer indices, which
Spark ALS needs as ids. The fitted factors come back as arrays indexed alike, so the model is an
ordinary ``ALSModel``: its artifact, serving, fold-in, forgetting and evaluation are unchanged.

Two differences between the solvers are mapped so one set of params means the same model:

* Confidence. implicit takes the matrix values as confidences, c = alpha * weight (and solves
  with c - 1 on the observed entries); Spark computes c = 1 + alpha_spark * |rating| and treats
  a rating <= 0 as a non-preference. So Spark gets alpha_spark = 1 and rating = alpha * weight
  - 1, the same c, floored at MIN_RATING so an entry with c <= 1 (a weight below 1 / alpha,
  from time decay) stays a positive with c ~ 1 instead of turning into a negative.
* Regularisation. implicit adds lambda * I to every solve; Spark adds regParam * n * I, n the
  ratings of the user (or item) being solved ("ALS-WR" scaling, applied to implicit feedback
  too). Spark gets regParam = lambda unchanged: measured by NDCG@10 (bench/spark_als.py), that
  reproduces the embedded model's quality, while the mapping that equals implicit's penalty
  for a user of average activity (regParam = lambda / mean ratings per user, ``mean_user``)
  loses quality: implicit's conjugate-gradient solves (three steps per iteration, from the
  previous factors) are themselves a regulariser that Spark's exact solves lack.

Spark is a much heavier runtime (a JVM, about 20 s to start a session); see the README's Spark
section for when it pays off.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from recsys_lite.config import get_settings
from recsys_lite.data import archive
from recsys_lite.errors import EmptyDataError, InvalidInputError, RecsysError
from recsys_lite.models.base import Recommender
from recsys_lite.models.implicit_mf import ALSModel
from recsys_lite.models.params import ModelParams
from recsys_lite.models.registry import create_model
from recsys_lite.models.types import TrainingData

Engine = Literal["embedded", "spark"]
ENGINES: tuple[str, ...] = ("embedded", "spark")
DEFAULT_MASTER = "local[2]"
MIN_RATING = 1e-6
RegScaling = Literal["mean_user", "none"]
MISSING = "the spark engine needs the spark extra: pip install 'recsys-lite[spark]' (and Java 17)"
ModelFactory = Callable[[str, dict[str, Any] | None], Recommender]


class SparkUnavailableError(RecsysError):
    """pyspark is not installed, or Spark could not start (no Java)."""

    code = "spark_unavailable"


def spark_session(master: str = DEFAULT_MASTER) -> Any:
    """The process's Spark session, started on first use (a later call reuses it, whatever
    master it names: Spark allows one session per process)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkUnavailableError(MISSING) from exc
    builder: Any = SparkSession.builder
    try:
        return (
            builder.master(master)
            .appName("recsys-lite")
            .config("spark.ui.enabled", "false")
            # the default 200 shuffle partitions are mostly empty tasks for a shop's data
            .config("spark.sql.shuffle.partitions", "8")
            .config("spark.driver.memory", get_settings().spark_driver_memory)
            # each ALS iteration lengthens the RDD lineage a task carries; deserialising it ran
            # out of the default 1 MB thread stack on 3M events (StackOverflowError) in local
            # mode, where tasks run on the driver's threads
            .config("spark.driver.extraJavaOptions", "-Xss16m")
            .config("spark.executor.extraJavaOptions", "-Xss16m")
            .getOrCreate()
        )
    except Exception as exc:  # no Java, a bad master URL: pyspark raises its own kinds
        raise SparkUnavailableError(f"Spark could not start ({master}): {exc}") from exc


def reg_param(regularization: float, matrix: sp.csr_matrix, scaling: RegScaling) -> float:
    """Spark's regParam for implicit's lambda (see the module docstring)."""
    if scaling == "none" or matrix.nnz == 0:
        return regularization
    return float(regularization * matrix.shape[0] / matrix.nnz)


def spark_ratings(matrix: sp.csr_matrix, alpha: float) -> pa.Table:
    """The matrix as (user, item, rating) rows whose Spark confidence is implicit's."""
    coo = matrix.tocoo()
    ratings = np.maximum(alpha * coo.data.astype(np.float64) - 1.0, MIN_RATING)
    return pa.table(
        {
            "user": coo.row.astype(np.int32),
            "item": coo.col.astype(np.int32),
            "rating": ratings.astype(np.float32),
        }
    )


def _factors(frame: Any, count: int, rank: int) -> np.ndarray:
    """Spark's (id, features) rows as an array indexed by id; an id Spark never saw (no
    ratings) keeps a zero vector, as a new item does in the embedded model."""
    table: pa.Table = frame.toArrow()
    out = np.zeros((count, rank), dtype=np.float32)
    if table.num_rows:
        ids = table.column("id").to_numpy()
        vectors = pc.list_flatten(table.column("features")).to_numpy(zero_copy_only=False)
        out[ids] = vectors.reshape(len(ids), rank)
    return out


class SparkALSModel(ALSModel):
    """``als`` fitted by Spark; saved and served as the embedded ALS (its name is ``als``)."""

    def __init__(
        self,
        params: ModelParams | dict[str, Any] | None = None,
        *,
        master: str = DEFAULT_MASTER,
        scaling: RegScaling = "none",
        blocks: int = 4,
    ) -> None:
        super().__init__(params)
        self.master = master
        self.scaling: RegScaling = scaling
        self.blocks = blocks

    def _fit(self, data: TrainingData, show_progress: bool) -> None:
        session = spark_session(self.master)  # first: it explains a missing pyspark
        from pyspark.ml.recommendation import ALS

        p = self.params
        matrix = data.interactions.matrix
        rows = spark_ratings(matrix, p.alpha)
        with tempfile.TemporaryDirectory(prefix="recsys-spark-") as folder:
            # Parquet rather than createDataFrame: the JVM reads the file itself, no rows
            # travel through the Python worker
            path = Path(folder) / "ratings.parquet"
            pq.write_table(rows, path)
            # with a checkpoint folder ALS cuts its RDD lineage every checkpointInterval (10)
            # iterations; without one it silently never does, and the lineage grows with them
            session.sparkContext.setCheckpointDir(str(Path(folder) / "checkpoints"))
            als = ALS(
                rank=p.factors,
                maxIter=p.iterations,
                regParam=reg_param(p.regularization, matrix, self.scaling),
                implicitPrefs=True,
                alpha=1.0,
                userCol="user",
                itemCol="item",
                ratingCol="rating",
                seed=p.random_state,
                numUserBlocks=self.blocks,
                numItemBlocks=self.blocks,
            )
            fitted = als.fit(session.read.parquet(str(path)))
            # collected inside the folder's lifetime: the factor frames are lazy over it
            self.user_factors = _factors(fitted.userFactors, matrix.shape[0], p.factors)
            self.item_factors = _factors(fitted.itemFactors, matrix.shape[1], p.factors)
        self._gram = None
        self.end_epoch(p.iterations)


def model_factory(engine: str, master: str = DEFAULT_MASTER) -> ModelFactory:
    """How ``training`` builds a model for an engine."""
    if engine == "embedded":
        return create_model
    if engine != "spark":
        raise InvalidInputError(f"unknown engine {engine!r}; known engines: {', '.join(ENGINES)}")

    def make(name: str, params: dict[str, Any] | None) -> Recommender:
        if name != "als":
            raise InvalidInputError(f"the spark engine trains als only, not {name!r}")
        return SparkALSModel(params, master=master, blocks=get_settings().spark_als_blocks)

    return make


def read_archive(path: Path, master: str = DEFAULT_MASTER) -> pa.Table:
    """The archive's events read by Spark, in the store's order and columns.

    Spark reads the Parquet files of the table's current version as listed by the Delta log
    (delta-spark's reader would fetch its jars at run time); the day partition lives in the
    folder names, not in the files, and is not needed here.
    """
    uris = archive.file_uris(path) if archive.exists(path) else []
    if not uris:
        raise EmptyDataError(f"{path}: the event archive holds no events")
    frame = spark_session(master).read.parquet(*uris)
    ordered = frame.orderBy("ts", "seq").select("user_id", "item_id", "ts", "qty", "event_type")
    table: pa.Table = ordered.toArrow()
    return table.cast(
        pa.schema(
            [
                ("user_id", pa.string()),
                ("item_id", pa.string()),
                ("ts", pa.int64()),
                ("qty", pa.int32()),
                ("event_type", pa.string()),
            ]
        )
    )
