from segdeploy.cli import run

run()
