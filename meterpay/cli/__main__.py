from meterpay.cli import main

main()
