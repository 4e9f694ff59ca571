"""HTTP API of the follow-up service (FastAPI): registry state, reports, reanalysis batches."""

from followup.api.app import ApiConfigError, create_app, patient_ref, serve_api

__all__ = ["ApiConfigError", "create_app", "patient_ref", "serve_api"]
