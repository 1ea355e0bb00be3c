"""notify-template: a notifycore plugin with one setting and one consumer."""

from notify_template.consumer import TemplateConsumer

__all__ = ["TemplateConsumer"]
