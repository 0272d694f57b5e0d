"""What the tests that run the camera service or scrape its /metrics share (no torch); tests/ imports
it too (tests/conftest.py puts tests/runtime on the path)."""
from occ.benchmarks.sink_servers import free_port, wait_for  # noqa: F401  (the sinks benchmark waits the same way)


def parse_metrics(body: str) -> dict[tuple, float]:
    """Samples of a Prometheus text body, parsed by prometheus_client's own parser: {(name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}
