from collections.abc import Callable

import numpy as np

def woodbury_contributions(
    projected: np.ndarray,
    factors: np.ndarray,
    items: np.ndarray,
    confidence: np.ndarray,
    targets: np.ndarray,
    out: np.ndarray,
) -> None: ...
def because_fields(
    contributions: np.ndarray,
    similarity: np.ndarray,
    items: np.ndarray,
    top_k: int,
    fragments: dict[int, bytes],
    fragment_of: Callable[[int], bytes],
) -> list[bytes]: ...
