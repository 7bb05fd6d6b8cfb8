"""DVC stage entry points: `python -m stages.<stage>` reads params.yaml and calls tinycls."""
