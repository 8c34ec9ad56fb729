"""What can change while the proxy runs: the live config, variant
assignment, and the admin API that changes them."""
