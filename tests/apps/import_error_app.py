"""An app module that fails at import time (for the CLI error tests)."""
raise RuntimeError("ringwsgi-test-import-boom")

app = None  # never reached
