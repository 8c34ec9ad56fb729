"""The offline commands (report, evaluate, calibrate). Nothing on the
request path imports them."""
