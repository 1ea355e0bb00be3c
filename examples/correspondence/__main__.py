from examples.correspondence.app import main

main()
