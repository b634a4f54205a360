"""A/B tests and interleaving between served artifacts: design, statistics, reports, promotion.

The serving side, which picks a variant per request, is ``serving/live_experiment.py``: this
package sits below serving and never imports it."""
