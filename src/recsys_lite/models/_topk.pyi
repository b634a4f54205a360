import numpy as np

def top_positions(
    scores: np.ndarray, indices: np.ndarray, excluded: np.ndarray, out: np.ndarray
) -> int: ...
