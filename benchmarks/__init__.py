"""Benchmarks: latency and backend agreement of exported models, and the accuracy benchmarks on the
walkway, MNIST, IR-MNIST and UCSD Ped2. ``occ-bench`` runs them; each writes JSON."""
