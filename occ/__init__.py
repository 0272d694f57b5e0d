"""occ: train, export and deploy adversarially trained one-class anomaly detectors (ALOCC, AVID)."""
__version__ = "0.2.0"
