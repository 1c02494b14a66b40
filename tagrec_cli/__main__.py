from tagrec_cli.cli import main

main()
