from examples.flask_notifications_walkthrough.app import main

main()
