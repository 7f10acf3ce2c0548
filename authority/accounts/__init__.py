"""Accounts: users, clients, passwords, login throttling and sign-up rules."""
