"""What of a catalog row is searched, and how its text is recognised when it comes back."""

from __future__ import annotations

import hashlib
from typing import Any

# The embedding model reads at most 256 word pieces; a long description would only cost
# encoding time for words it then cuts off.
MAX_SEMANTIC_CHARS = 600


def semantic_text(row: dict[str, Any]) -> str:
    """Title, category, brand and description: the words a shopper would describe it with.

    The id is left out here: a code means nothing to a sentence model and would pull unrelated
    items with similar-looking codes together. The lexical side matches codes.
    """
    parts = [row.get("title"), row.get("category"), row.get("brand"), row.get("description")]
    text = " | ".join(str(part).strip() for part in parts if part and str(part).strip())
    return (text or str(row["item_id"]))[:MAX_SEMANTIC_CHARS]


def lexical_text(row: dict[str, Any]) -> str:
    """Everything a shopper might type, the item id (a product code) included."""
    parts = [
        row["item_id"], row.get("title"), row.get("category"), row.get("brand"),
        row.get("description"),
    ]  # fmt: skip
    return " ".join(str(part) for part in parts if part)


def text_key(row: dict[str, Any]) -> str:
    """Changes exactly when the embedded text changes, so unchanged items keep their vector
    from one artifact to the next instead of being encoded again."""
    return hashlib.blake2b(semantic_text(row).encode(), digest_size=12).hexdigest()
