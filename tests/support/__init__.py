"""Helpers the tests share: a throw-away PKI and a loopback nginx harness."""
