"""Signed status webhooks to customers: outbox, delivery, signing, tasks."""
