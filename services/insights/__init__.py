"""Insights: every deal's timeline across the stages, with forecast, bottlenecks and stalls."""
