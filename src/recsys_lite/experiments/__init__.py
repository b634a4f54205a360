"""A/B tests and interleaving between served artifacts: design, serving, statistics, promotion."""
