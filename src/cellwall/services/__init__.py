"""Use cases shared by the CLI and the API, so that both stay thin."""
