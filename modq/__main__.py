from modq.cli.main import run

run()
