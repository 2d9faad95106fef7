"""The HTTP edge: verifies SendGrid webhooks and unsubscribe clicks, and hands them to JetStream."""
