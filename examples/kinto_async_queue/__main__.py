from examples.kinto_async_queue.app import main

main()
