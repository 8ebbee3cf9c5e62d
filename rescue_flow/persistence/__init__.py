"""Durable request history and TaskFlow persistence on one SQL database."""
