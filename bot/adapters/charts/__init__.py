"""Charts drawn for Slack: PNG images rendered with matplotlib's Agg backend (no display)."""
