"""The automation policy in force: reading it from config, live reload, and its history."""
