from incremental.cli import main

main()
