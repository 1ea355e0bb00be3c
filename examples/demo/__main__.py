from examples.demo.app import main

main()
