"""Reports: before/after summaries, density plots, and one self-contained HTML page."""
