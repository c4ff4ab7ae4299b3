"""What `evgw check` runs against the real site."""
