"""Benchmarks: ``meterpay bench <name>`` loads one of these modules only when it is run.

Each module holds one or more click commands; ``meterpay/cli/bench.py`` lists them by name, so no
other ``meterpay`` command imports benchmark code. Fixtures are shared with the tests
(``bench/fixtures.py``).
"""
