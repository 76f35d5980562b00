"""Webhooks: events about cases, written to an outbox in the same transaction as the change they report, and
delivered to the client's endpoints under the Standard Webhooks conventions, retried until they arrive."""
