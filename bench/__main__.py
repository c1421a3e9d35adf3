"""``python -m bench``: run the benchmarks and print one table (see bench/README.md)."""

from bench.run import main

if __name__ == "__main__":
    main()
