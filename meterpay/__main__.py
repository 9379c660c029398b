"""``python -m meterpay``: the same command line as ``meterpay``."""
from meterpay.cli import main

if __name__ == "__main__":
    main()
