"""The record envelope and the body of each record kind."""
