from tillstream.cli import main

main()
