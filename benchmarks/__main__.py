from occ.benchmarks.cli import app

app(prog_name="occ-bench")
