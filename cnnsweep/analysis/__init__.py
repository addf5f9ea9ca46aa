"""Explaining models (issue 8): per-class errors, data analysis, visualizations, the HTML report."""
