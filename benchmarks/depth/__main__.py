from benchmarks.depth.cli import main

main()
