"""The experiment server: FastAPI app, database, task assignment and export of the responses."""
