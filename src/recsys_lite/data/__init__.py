"""Data layer: the embedded store, ingestion, id mapping, interaction matrices, demo data,
the audit trail."""
