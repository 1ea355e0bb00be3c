"""notify-template-backend: a notifycore backend that implements only the seven primitives."""

from notify_template_backend.backend import TemplateBackend

__all__ = ["TemplateBackend"]
