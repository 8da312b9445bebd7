from storyflow.entrypoints.cli.launch import run

run()
