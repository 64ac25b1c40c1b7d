from worker.cli import run

run()
