"""Infrastructure shared by the services: the wire contract, database and
Celery set-up, the transactional outbox, idempotent consumers, web helpers.
No business logic lives here."""
