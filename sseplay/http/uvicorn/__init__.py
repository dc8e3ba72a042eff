"""Every reach into uvicorn's internals, in one place (see CONTRACT.md beside this file)."""
