"""pseudovad: video anomaly detection trained from normal footage with pseudo anomalies."""

__version__ = "0.1.0"
