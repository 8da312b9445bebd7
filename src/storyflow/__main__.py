from storyflow.entrypoints.cli.main import run

run()
