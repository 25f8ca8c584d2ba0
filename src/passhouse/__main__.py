from passhouse.cli import main

main()
