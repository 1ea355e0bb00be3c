from examples.kinto_email_listener.app import main

main()
