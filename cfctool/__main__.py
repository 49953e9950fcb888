from cfctool.cli.app import main

main()
