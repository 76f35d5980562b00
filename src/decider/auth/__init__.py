"""Who may do what: API keys for client systems, logins for people."""
