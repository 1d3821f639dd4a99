"""Conversations and their messages: views, schemas, the service, cursors, idempotency."""
