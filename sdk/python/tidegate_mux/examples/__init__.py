"""Example applications: ``echo`` (used by the tests) and ``chat``."""
