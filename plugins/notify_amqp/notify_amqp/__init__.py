"""notify-amqp: the RabbitMQ backend of notifycore, through kombu."""

from notify_amqp.backend import AmqpBackend

__all__ = ["AmqpBackend"]
