#!/usr/bin/env python
"""Training throughput: the library's path against the report's pipeline.

A thin wrapper around ``hpstudy.bench.throughput`` (the same as ``hpstudy bench ...``); see
``python benchmarks/bench.py --help`` and benchmarks/RESULTS.md.
"""
import sys

from hpstudy.bench.throughput import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
