"""Training (PyTorch): the networks of ALOCC and AVID and their adversarial training loops."""
