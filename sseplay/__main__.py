from sseplay.cli.app import main

main()
