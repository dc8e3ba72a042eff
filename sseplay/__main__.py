from sseplay.cli import main

main()
