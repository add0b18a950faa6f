from edge_fer.cli import main

main()
