"""Monitoring: outcome feedback, Prometheus metrics, drift, output and quality figures, the page and report."""
