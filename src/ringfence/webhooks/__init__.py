"""Webhooks: signed (Standard Webhooks) notices of access and circle events, delivered with
retries from a durable queue in the database."""
