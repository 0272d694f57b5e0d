from occ.cli import app

app(prog_name="occ")
