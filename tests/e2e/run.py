#!/usr/bin/python3
"""Runs the mxvault end-to-end suite: every tests/e2e/test_*.py, unittest,
verbosity 2. Exits non-zero when a test fails or errors, and ends with one
line: "e2e: N passed, M failed, K skipped" (tests, not subtests: a test with
two failing subtests counts once).

    MXVAULT_BIN=build/asan/mxvault python3 tests/e2e/run.py [-k PATTERN]...

-k is passed to unittest (substring or glob of test names).
"""
import argparse
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def case_id(test):
    # A failing subtest is reported as a _SubTest wrapping the real test.
    return getattr(test, 'test_case', test).id()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('-k', dest='patterns', action='append', default=[], help='only tests matching PATTERN')
    ap.add_argument('-q', dest='verbosity', action='store_const', const=1, default=2, help='less output')
    args = ap.parse_args()

    sys.path.insert(0, HERE)
    loader = unittest.TestLoader()
    if args.patterns:
        loader.testNamePatterns = [p if '*' in p else '*%s*' % p for p in args.patterns]
    suite = loader.discover(HERE, pattern='test_*.py', top_level_dir=HERE)
    result = unittest.TextTestRunner(verbosity=args.verbosity, stream=sys.stdout).run(suite)

    failed = {case_id(t) for t, _ in result.failures + result.errors}
    failed |= {case_id(t) for t in result.unexpectedSuccesses}
    skipped = {case_id(t) for t, _ in result.skipped} - failed
    passed = max(result.testsRun - len(failed) - len(skipped), 0)
    print('e2e: %d passed, %d failed, %d skipped' % (passed, len(failed), len(skipped)))
    sys.exit(0 if not failed and result.wasSuccessful() else 1)


if __name__ == '__main__':
    main()
