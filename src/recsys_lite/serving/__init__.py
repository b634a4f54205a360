"""HTTP serving: FastAPI app over a loaded artifact and the item catalog."""
