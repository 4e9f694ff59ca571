"""The API's routers, one per resource; ``followup.api.app.create_app`` composes them."""
