"""The lab beside the product: data sets, the papers' evaluation protocols, metrics, plots and
calibration from data. Training, benchmarks and the CLI use it; the camera path never does."""
